package template

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestParseFormat(t *testing.T) {
	if _, err := ParseFormat(DefaultFormat); err != nil {
		t.Fatalf("the default format: %v", err)
	}
	f, err := ParseFormat("erofs-lz4")
	if err != nil || f.FS != "erofs" || f.Comp != "lz4" {
		t.Errorf("erofs-lz4: %+v %v", f, err)
	}
	if _, err := ParseFormat("squashfs-lzo"); err == nil {
		t.Error("an unknown format was accepted")
	}
	// A filesystem's name alone is its default format.
	if f, err := ParseFormat("squashfs"); err != nil || f.Name != DefaultSquashfsFormat || f.Comp != "lz4" {
		t.Errorf("squashfs: %+v %v", f, err)
	}
}

// FILE's extension says the format; --format must agree with it; a name
// that says nothing needs --format (issue 20: "template x.squashfs" wrote
// erofs).
func TestFormatFor(t *testing.T) {
	for _, tc := range []struct {
		file, format string
		want         string // the format's name, or "" for a refusal
		errHas       []string
	}{
		{"/t/debian.squashfs", "", "squashfs-lz4", nil},
		{"/t/debian.SQFS", "", "squashfs-lz4", nil},
		{"/t/debian.erofs", "", "erofs", nil},
		{"/t/debian/", "", "dir", nil},
		{"/t/debian.squashfs", "squashfs-zstd", "squashfs-zstd", nil},
		{"/t/debian.squashfs", "squashfs", "squashfs-lz4", nil},
		{"/t/debian.erofs", "erofs-lz4hc", "erofs-lz4hc", nil},
		{"/t/debian", "erofs", "erofs", nil},
		{"/t/debian.tpl", "squashfs-xz", "squashfs-xz", nil},
		{"/t/debian.img", "erofs", "erofs", nil},
		{"/t/debian", "dir", "dir", nil},
		{"/t/debian.squashfs", "erofs", "", []string{"/t/debian.squashfs is named like a squashfs image", "--format erofs writes an erofs image", "name it /t/debian.erofs", "--format squashfs-lz4"}},
		{"/t/debian.erofs", "squashfs-gzip", "", []string{"named like an erofs image", "name it /t/debian.squashfs", "--format erofs"}},
		{"/t/debian.erofs", "dir", "", []string{"name it /t/debian/"}},
		{"/t/debian/", "erofs", "", []string{"named like a directory", "name it /t/debian.erofs"}},
		{"/t/debian.ext4", "", "", []string{"ext4 templates can be used", "/t/debian.erofs (erofs", "/t/debian.squashfs (squashfs-lz4"}},
		{"/t/debian.ext4", "erofs", "", []string{"named like an ext4 image", "name it /t/debian.erofs"}},
		{"/t/debian.img", "", "", []string{".img names no filesystem", "--format FORMAT (erofs, squashfs-lz4"}},
		{"/t/debian", "", "", []string{"/t/debian has no extension", "/t/debian.erofs", "/t/debian/ (a directory)"}},
		{"/t/debian.tpl", "", "", []string{"the extension .tpl does not say"}},
		{"/t/rootfs.tar.xz", "", "", []string{"named like a tarball", "/t/rootfs.erofs"}},
		{"/t/rootfs.tar.xz", "squashfs", "", []string{"name it /t/rootfs.squashfs"}},
		{"/t/debian.squashfs", "ext4", "", []string{`format "ext4" is not one of`}},
	} {
		f, err := FormatFor(tc.file, tc.format)
		if tc.want != "" {
			if err != nil || f.Name != tc.want {
				t.Errorf("FormatFor(%q, %q) = %q, %v; want %s", tc.file, tc.format, f.Name, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("FormatFor(%q, %q) = %q; want a refusal", tc.file, tc.format, f.Name)
			continue
		}
		for _, h := range tc.errHas {
			if !strings.Contains(err.Error(), h) {
				t.Errorf("FormatFor(%q, %q): %q lacks %q", tc.file, tc.format, err, h)
			}
		}
	}
}

func TestIsTarballName(t *testing.T) {
	for name, want := range map[string]bool{
		"rootfs.tar.xz": true, "a.tar": true, "a.tar.gz": true, "a.tgz": true, "a.tar.zst": true,
		"a.squashfs": false, "tar": false, "a.xz": false,
	} {
		if got := IsTarballName(name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

func TestCompression(t *testing.T) {
	sq := make([]byte, 96)
	binary.LittleEndian.PutUint32(sq, 0x73717368)
	for id, want := range map[uint16]string{1: "gzip", 4: "xz", 5: "lz4", 6: "zstd", 9: "compression id 9"} {
		binary.LittleEndian.PutUint16(sq[20:], id)
		got, err := Compression(bytes.NewReader(sq), "squashfs")
		if err != nil || got != want {
			t.Errorf("squashfs id %d: %q %v, want %q", id, got, err, want)
		}
	}
	ero := make([]byte, 2048)
	if got, _ := Compression(bytes.NewReader(ero), "erofs"); got != "" {
		t.Errorf("uncompressed erofs: %q", got)
	}
	binary.LittleEndian.PutUint32(ero[1024+80:], erofsFeatureComprCfgs)
	binary.LittleEndian.PutUint16(ero[1024+84:], 1<<0|1<<1)
	if got, _ := Compression(bytes.NewReader(ero), "erofs"); got != "lz4+lzma" {
		t.Errorf("erofs lz4+lzma: %q", got)
	}
	for comp, slow := range map[string]bool{"gzip": true, "xz": true, "lz4+lzma": true, "lz4": false, "zstd": false, "": false} {
		if SlowCompression(comp) != slow {
			t.Errorf("SlowCompression(%q) = %v", comp, !slow)
		}
	}
}

// The conversion init suggests for a slow template is named with the
// extension its format has, and names that format.
func TestConversion(t *testing.T) {
	for _, tc := range []struct{ path, fstype, to, format string }{
		{"/t/debian.squashfs", "squashfs", "/t/debian-lz4.squashfs", "squashfs-lz4"},
		{"/t/debian.sqfs", "squashfs", "/t/debian-lz4.sqfs", "squashfs-lz4"},
		{"/t/debian.img", "squashfs", "/t/debian-lz4.squashfs", "squashfs-lz4"},
		{"/t/debian", "squashfs", "/t/debian-lz4.squashfs", "squashfs-lz4"},
		{"/t/debian.erofs", "erofs", "/t/debian-uncompressed.erofs", "erofs"},
	} {
		to, format := Conversion(tc.path, tc.fstype)
		if to != tc.to || format != tc.format {
			t.Errorf("Conversion(%s) = %s %s, want %s %s", tc.path, to, format, tc.to, tc.format)
		}
		// What the name says is what --format writes: the command is valid.
		if f, err := FormatFor(to, format); err != nil || f.Name != format {
			t.Errorf("the suggested %s --format %s is refused: %v", to, format, err)
		}
	}
}
