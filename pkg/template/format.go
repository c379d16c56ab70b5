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
	"path/filepath"
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
	{"erofs", "erofs", "", "erofs, uncompressed: no decompression at all, fastest to boot, largest file (NAME.erofs)"},
	{"squashfs-lz4", "squashfs", "lz4", "squashfs, lz4: fast to decompress, half the size of erofs (NAME.squashfs)"},
	{"squashfs-zstd", "squashfs", "zstd", "squashfs, zstd: smaller, slower to boot than lz4"},
	{"squashfs-gzip", "squashfs", "gzip", "squashfs, gzip (mksquashfs's default): slow to boot"},
	{"squashfs-xz", "squashfs", "xz", "squashfs, xz: smallest, slowest to boot"},
	{"erofs-lz4", "erofs", "lz4", "erofs, lz4"},
	{"erofs-lz4hc", "erofs", "lz4hc", "erofs, lz4hc: lz4 to read, smaller, slower to build"},
	{"dir", "dir", "", "an extracted directory (no image)"},
}

// DefaultFormat is the erofs format: what a FILE named .erofs gets, and
// the image format fastest to boot.
const DefaultFormat = "erofs"

// DefaultSquashfsFormat is what a FILE named .squashfs (.sqfs) gets: lz4,
// the squashfs compression fastest to boot (docs/benchmarks.md, "Templates
// by format": 1.10x erofs's boot at about half its size; mksquashfs's own
// default, gzip, 1.35x).
const DefaultSquashfsFormat = "squashfs-lz4"

// familyDefault is the format a filesystem's name alone selects, as
// --format takes it too ("--format squashfs").
var familyDefault = map[string]string{"squashfs": DefaultSquashfsFormat, "erofs": DefaultFormat, "dir": "dir"}

// ParseFormat looks a format up by name; a filesystem's name alone
// ("squashfs") is its default format.
func ParseFormat(name string) (Format, error) {
	if d, ok := familyDefault[name]; ok {
		name = d
	}
	for _, f := range Formats {
		if f.Name == name {
			return f, nil
		}
	}
	return Format{}, fmt.Errorf("format %q is not one of %s", name, strings.Join(FormatNames(), ", "))
}

// fileKinds are the name endings that say what a file holds.
var fileKinds = []struct{ suffix, kind string }{
	{".squashfs", "squashfs"}, {".sqfs", "squashfs"},
	{".erofs", "erofs"},
	{".ext4", "ext4"}, {".ext3", "ext4"}, {".ext2", "ext4"},
	{".img", "image"}, {".image", "image"},
}

// kindOfName says what a template FILE's name promises: "dir" for a name
// ending in "/", "squashfs", "erofs", "ext4", "image" (.img: an image of
// no filesystem in particular), "tarball", or "" (no extension, or one
// that names nothing).
func kindOfName(file string) string {
	if strings.HasSuffix(file, "/") {
		return "dir"
	}
	if IsTarballName(file) {
		return "tarball"
	}
	lower := strings.ToLower(file)
	for _, k := range fileKinds {
		if strings.HasSuffix(lower, k.suffix) {
			return k.kind
		}
	}
	return ""
}

// nameFor is file renamed to what format f writes: its extension replaced
// by f's, or a trailing "/" for a directory.
func nameFor(file string, f Format) string {
	base := strings.TrimSuffix(file, "/")
	if ext := filepath.Ext(base); ext != "" && !strings.Contains(ext, "/") {
		base = strings.TrimSuffix(base, ext)
	}
	if f.FS == "dir" {
		return base + "/"
	}
	return base + "." + f.FS
}

// FormatFor is the format to write template FILE in: --format's
// (explicit, "" when not given) or else the one FILE's extension names, so
// that a file named .squashfs is a squashfs. A --format the name
// contradicts is refused naming both and the fix, and so is a name that
// says no format (no extension, an unknown one, .img) without --format:
// the file's name is what people and scripts read later.
func FormatFor(file, explicit string) (Format, error) {
	kind := kindOfName(file)
	stem := strings.TrimSuffix(nameFor(file, Format{FS: "dir"}), "/")
	if kind == "tarball" {
		stem = strings.TrimSuffix(file, tarSuffix(file))
	}
	choices := fmt.Sprintf("name it %s.erofs (erofs, uncompressed: fastest to boot), %s.squashfs (%s: about half the size) or %s/ (a directory), or give --format FORMAT (%s)", stem, stem, DefaultSquashfsFormat, stem, strings.Join(FormatNames(), ", "))
	if explicit != "" {
		f, err := ParseFormat(explicit)
		if err != nil {
			return Format{}, err
		}
		switch kind {
		case "", "image":
			return f, nil
		case "tarball":
			renamed := strings.TrimSuffix(file, tarSuffix(file)) + "." + f.FS
			if f.FS == "dir" {
				renamed = strings.TrimSuffix(file, tarSuffix(file)) + "/"
			}
			return Format{}, fmt.Errorf("%s is named like a tarball, but template writes %s (--format %s): name it %s", file, describeFS(f.FS), f.Name, renamed)
		case "ext4":
			return Format{}, fmt.Errorf("%s is named like an ext4 image, but --format %s writes %s: name it %s", file, f.Name, describeFS(f.FS), nameFor(file, f))
		}
		if kind != f.FS {
			other, _ := ParseFormat(kind)
			return Format{}, fmt.Errorf("%s is named like %s, but --format %s writes %s: name it %s, or give --format %s (or leave --format out)", file, describeFS(kind), f.Name, describeFS(f.FS), nameFor(file, f), other.Name)
		}
		return f, nil
	}
	switch kind {
	case "squashfs", "erofs", "dir":
		return ParseFormat(kind)
	case "ext4":
		return Format{}, fmt.Errorf("%s is named like an ext4 image: ext4 templates can be used (init --template) but template does not write them; %s", file, choices)
	case "image":
		return Format{}, fmt.Errorf("%s: %s names no filesystem, so it says nothing about the format to write; %s", file, filepath.Ext(file), choices)
	case "tarball":
		return Format{}, fmt.Errorf("%s is named like a tarball: template writes a filesystem image or a directory; %s", file, choices)
	}
	if ext := filepath.Ext(file); ext != "" {
		return Format{}, fmt.Errorf("%s: the extension %s does not say which format to write; %s", file, ext, choices)
	}
	return Format{}, fmt.Errorf("%s has no extension to say which format to write; %s", file, choices)
}

// Conversion is the template to convert a slow image at path (a squashfs
// or erofs, fstype) into, and its format: the same filesystem without a
// slow decompressor (squashfs-lz4; uncompressed erofs), named with the
// extension that format has, e.g. debian.squashfs -> debian-lz4.squashfs.
func Conversion(path, fstype string) (to, format string) {
	f, _ := ParseFormat(DefaultSquashfsFormat)
	tag := "-lz4"
	if fstype == "erofs" {
		f, _ = ParseFormat(DefaultFormat)
		tag = "-uncompressed"
	}
	ext := filepath.Ext(path)
	if kindOfName(path) != f.FS {
		ext = "." + f.FS
	}
	return strings.TrimSuffix(path, filepath.Ext(path)) + tag + ext, f.Name
}

// describeFS names what a format family writes, for messages.
func describeFS(fs string) string {
	switch fs {
	case "dir":
		return "a directory"
	case "ext4":
		return "an ext4 image"
	case "erofs":
		return "an erofs image"
	}
	return "a " + fs + " image"
}

// tarSuffix is the tarball suffix name ends with.
func tarSuffix(name string) string {
	for _, s := range tarSuffixes {
		if strings.HasSuffix(name, s) {
			return s
		}
	}
	return ""
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
