// Package template builds read-only container templates: a squashfs or
// erofs image (or a directory) made from a directory, a rootfs tarball, an
// existing template image, or the union of a hook-managed container's
// template and writable layer, keeping what a root filesystem needs
// (numeric ownership, setuid bits, file capabilities and other xattrs,
// device nodes, fifos, hardlinks, symlinks, holes, times).
//
// The tools that write the filesystems are exec'd with argv (mksquashfs,
// mkfs.erofs, tar, cp); what this package owns is choosing their flags,
// mounting the sources read-only in a private mount namespace, and putting
// the result in place without ever replacing an existing file.
package template

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Format is one kind of template file this package writes.
type Format struct {
	Name string // as --format takes it
	FS   string // "squashfs", "erofs" or "dir"
	// Comp is the compressor as the tool names it; "" for none.
	Comp  string
	About string
}

// Formats, the default first. Measured on a Debian bookworm template
// (docs/benchmarks.md, "Templates by format"): uncompressed erofs boots
// fastest of the image formats (1.21x the extracted directory, squashfs-lz4
// 1.33x, mksquashfs's default gzip 1.63x) and settles K = 256 containers
// fastest with the least page cache, at the price of a file about twice
// as large as squashfs-lz4's.
var Formats = []Format{
	{"erofs", "erofs", "", "erofs, uncompressed: no decompression at all, fastest to boot (default), largest file"},
	{"squashfs-lz4", "squashfs", "lz4", "squashfs, lz4: fast to decompress, half the size of erofs"},
	{"squashfs-zstd", "squashfs", "zstd", "squashfs, zstd: smaller, slower to boot than lz4"},
	{"squashfs-gzip", "squashfs", "gzip", "squashfs, gzip (mksquashfs's default): slow to boot"},
	{"squashfs-xz", "squashfs", "xz", "squashfs, xz: smallest, slowest to boot"},
	{"erofs-lz4", "erofs", "lz4", "erofs, lz4"},
	{"erofs-lz4hc", "erofs", "lz4hc", "erofs, lz4hc: lz4 to read, smaller, slower to build"},
	{"dir", "dir", "", "an extracted directory (no image)"},
}

// DefaultFormat is what --format defaults to.
const DefaultFormat = "erofs"

// ParseFormat looks a format up by name.
func ParseFormat(name string) (Format, error) {
	for _, f := range Formats {
		if f.Name == name {
			return f, nil
		}
	}
	return Format{}, fmt.Errorf("format %q is not one of %s", name, strings.Join(FormatNames(), ", "))
}

// FormatNames lists the formats' names.
func FormatNames() []string {
	var n []string
	for _, f := range Formats {
		n = append(n, f.Name)
	}
	return n
}

// Tarball compressions, by file name suffix; tar itself recognises the
// compression by content when extracting a file.
var tarSuffixes = []string{".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.zst", ".tar.zstd", ".tzst", ".tar.bz2"}

// IsTarballName reports whether name looks like a (compressed) tarball.
func IsTarballName(name string) bool {
	for _, s := range tarSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// squashfs compression ids (squashfs_fs.h) and erofs compression
// algorithm bits (erofs_fs.h).
var squashfsComp = map[uint16]string{1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}

const (
	erofsFeatureComprCfgs = 0x2 // EROFS_FEATURE_INCOMPAT_COMPR_CFGS
	erofsFeatureLz4Cfgs   = 0x1 // the same bit under its older name
)

// Compression names the compressor of a squashfs or erofs image in r: for
// squashfs the superblock's compression id, for erofs the algorithms the
// superblock announces ("" when it is uncompressed or only lz4 is
// possible). fstype is what layer.DetectFS said.
func Compression(r io.ReaderAt, fstype string) (string, error) {
	switch fstype {
	case "squashfs":
		b := make([]byte, 2)
		if _, err := r.ReadAt(b, 20); err != nil {
			return "", err
		}
		id := binary.LittleEndian.Uint16(b)
		if n, ok := squashfsComp[id]; ok {
			return n, nil
		}
		return fmt.Sprintf("compression id %d", id), nil
	case "erofs":
		// erofs_super_block at 1024: feature_incompat at 80, then
		// available_compr_algs (when COMPR_CFGS is set) at 84.
		b := make([]byte, 6)
		if _, err := r.ReadAt(b, 1024+80); err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		incompat := binary.LittleEndian.Uint32(b[0:4])
		if incompat&erofsFeatureComprCfgs == 0 {
			return "", nil
		}
		algs := binary.LittleEndian.Uint16(b[4:6])
		var names []string
		for i, n := range []string{"lz4", "lzma", "deflate", "zstd"} {
			if algs&(1<<i) != 0 {
				names = append(names, n)
			}
		}
		return strings.Join(names, "+"), nil
	}
	return "", nil
}

// SlowCompression reports whether an image compressed with comp is slow to
// boot: a decompressor much slower than lz4 that every cold read of the
// template pays (gzip costs about 130-150 ms of a 290 ms Debian boot here).
func SlowCompression(comp string) bool {
	for _, c := range strings.Split(comp, "+") {
		switch c {
		case "gzip", "lzma", "xz", "deflate":
			return true
		}
	}
	return false
}
