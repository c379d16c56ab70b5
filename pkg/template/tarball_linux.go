package template

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/lxc-hooks/lxc-hooks/pkg/progress"
)

// tarballCompressions are the compressions tar's -a knows, by their
// magic numbers: tar recognises them by content in a file, but not on
// its standard input, where it must be told.
var tarballCompressions = []struct {
	magic []byte
	flag  string
}{
	{[]byte{0x1f, 0x8b}, "--gzip"},
	{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "--xz"},
	{[]byte{0x28, 0xb5, 0x2f, 0xfd}, "--zstd"},
	{[]byte("BZh"), "--bzip2"},
}

// countedTarball is a tarball read for tar's standard input, counting the
// bytes read for the progress line.
type countedTarball struct {
	f           *os.File
	size        int64
	read        atomic.Int64
	m           *progress.Meter
	compression []string // tar's flag for it, none for a plain tarball
}

func (c *countedTarball) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	c.m.Bytes(c.read.Add(int64(n)), c.size)
	return n, err
}

func (c *countedTarball) Close() error { return c.f.Close() }

// tarballInput opens the tarball for tar's standard input when progress is
// shown, so that the bytes of it read so far measure the extraction; nil
// (tar opens the file by name, as without a terminal) when m is nil or
// the compression is none tar's flags name here.
func tarballInput(path string, m *progress.Meter) (*countedTarball, error) {
	if m == nil {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	head := make([]byte, 6)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		f.Close()
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	c := &countedTarball{f: f, size: fi.Size(), m: m}
	head = head[:n]
	for _, k := range tarballCompressions {
		if bytes.HasPrefix(head, k.magic) {
			c.compression = []string{k.flag}
			return c, nil
		}
	}
	// A plain tarball has "ustar" at offset 257, which a header of 6 bytes
	// does not reach: anything not compressed in one of the ways above
	// goes by name, so tar's own detection (lzip, lzop, ...) still works.
	if isPlainTar(f) {
		return c, nil
	}
	f.Close()
	return nil, nil
}

// isPlainTar reports whether f starts with a ustar or GNU tar header.
func isPlainTar(f *os.File) bool {
	b := make([]byte, 5)
	if _, err := f.ReadAt(b, 257); err != nil {
		return false
	}
	return string(b) == "ustar"
}
