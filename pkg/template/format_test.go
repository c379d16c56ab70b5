package template

import (
	"bytes"
	"encoding/binary"
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
	if _, err := ParseFormat("squashfs"); err == nil {
		t.Error("an unknown format was accepted")
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
