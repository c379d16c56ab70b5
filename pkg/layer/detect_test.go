package layer

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

func imageWith(off int, magic []byte) []byte {
	b := make([]byte, 4096)
	copy(b[off:], magic)
	return b
}

func le32(v uint32) []byte { b := make([]byte, 4); binary.LittleEndian.PutUint32(b, v); return b }
func le16(v uint16) []byte { b := make([]byte, 2); binary.LittleEndian.PutUint16(b, v); return b }

func TestDetectFS(t *testing.T) {
	cases := map[string][]byte{
		"squashfs": imageWith(0, []byte("hsqs")),
		"erofs":    imageWith(1024, le32(0xE0F5E1E2)),
		"ext4":     imageWith(1080, le16(0xEF53)),
		"":         imageWith(0, []byte("not a filesystem")),
	}
	for want, img := range cases {
		got, err := DetectFS(bytes.NewReader(img))
		if err != nil || got != want {
			t.Errorf("DetectFS(%q image) = %q, %v", want, got, err)
		}
	}
	// A file shorter than any superblock is simply not an image.
	if got, err := DetectFS(bytes.NewReader([]byte("hs"))); err != nil || got != "" {
		t.Errorf("short file: %q, %v", got, err)
	}
}

func TestResolveLower(t *testing.T) {
	dir := t.TempDir()
	sq := filepath.Join(dir, "t.img") // the name says nothing: magic decides
	os.WriteFile(sq, imageWith(0, []byte("hsqs")), 0o644)
	junk := filepath.Join(dir, "t.squashfs")
	os.WriteFile(junk, []byte("random bytes, not a filesystem"), 0o644)

	if l, err := ResolveLower(dir); err != nil || l.IsImage() {
		t.Errorf("directory: %+v %v", l, err)
	}
	if l, err := ResolveLower(sq); err != nil || l.FSType != "squashfs" || l.Ino == 0 {
		t.Errorf("squashfs: %+v %v", l, err)
	}
	for path, want := range map[string]string{
		junk:                      "neither a directory nor a squashfs, erofs or ext4 image",
		filepath.Join(dir, "nop"): "does not exist",
		"/dev/null":               "neither a directory nor a filesystem image file",
	} {
		_, err := ResolveLower(path)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("ResolveLower(%q) = %v, want %q naming the path", path, err, want)
		}
	}
}

func openDir(t *testing.T, dir string) *trust.Dir {
	t.Helper()
	d, err := trust.OpenDir(dir, "layer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestMarker(t *testing.T) {
	dir := t.TempDir()
	upper := filepath.Join(dir, "upper")
	os.Mkdir(upper, 0o755)
	d := openDir(t, dir)
	if err := CheckMarker(d, Overlay); err != nil {
		t.Fatal(err)
	}
	if err := CheckMarker(d, Overlay); err != nil {
		t.Fatalf("same filesystem refused: %v", err)
	}
	err := CheckMarker(d, Aufs)
	if err == nil || !strings.Contains(err.Error(), "written by overlay") {
		t.Fatalf("aufs over an overlay layer: %v", err)
	}
	if got := MarkerOf(dir); got != Overlay {
		t.Fatalf("MarkerOf = %q", got)
	}

	legacy := t.TempDir()
	lu := filepath.Join(legacy, "upper")
	os.Mkdir(lu, 0o755)
	os.WriteFile(filepath.Join(lu, ".wh..wh.aufs"), nil, 0o644)
	if err := CheckMarker(openDir(t, legacy), Overlay); err == nil || !strings.Contains(err.Error(), "AuFS whiteouts") {
		t.Fatalf("unmarked aufs layer taken by overlay: %v", err)
	}
}

// A link planted at the marker's name, or at the name earlier versions
// wrote it under first, is never followed: the file it points to keeps
// its bytes.
func TestMarkerNeverFollowsLinks(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "upper"), 0o755)
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	os.Symlink(victim, filepath.Join(dir, MarkerName+".tmp"))
	d := openDir(t, dir)
	if err := CheckMarker(d, Overlay); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, MarkerName))
	os.Symlink(victim, filepath.Join(dir, MarkerName))
	err := CheckMarker(d, Overlay)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("marker link: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("victim now %q", b)
	}
}
