package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestForIsStableReadableAndDistinct(t *testing.T) {
	a := For("/run/x", "web 1/x", "/var/lib/lxc/web1/config")
	b := For("/run/x", "web 1/x", "/srv/lxc/web1/config")
	if a != For("/run/x", "web 1/x", "/var/lib/lxc/web1/config") {
		t.Fatal("not stable")
	}
	if a == b {
		t.Fatal("same name under two lxcpaths share a directory")
	}
	if !strings.HasPrefix(filepath.Base(a.Path), "web_1_x-") {
		t.Fatalf("unreadable or unsafe: %s", a.Path)
	}
}

func TestSaveLoadRemove(t *testing.T) {
	d := Dir{Path: filepath.Join(t.TempDir(), "c")}
	if r, err := d.Load(); r != nil || err != nil {
		t.Fatalf("missing record: %v %v", r, err)
	}
	mp, err := d.Mountpoint("lower0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &Record{Container: "c", MountNS: 7, Loops: []Loop{{Device: "/dev/loop3", Number: 3, Diskseq: 9, Role: "image"}}, Mountpoints: []string{mp}}
	if err := d.Save(rec); err != nil {
		t.Fatal(err)
	}
	got, err := d.Load()
	if err != nil || got.Loops[0].Diskseq != 9 || got.MountNS != 7 {
		t.Fatalf("%+v %v", got, err)
	}
	// A file left under a mountpoint (an unmount that silently failed) must survive.
	os.WriteFile(filepath.Join(mp, "precious"), []byte("x"), 0o600)
	if err := d.Remove(got); err == nil {
		t.Fatal("non-empty mountpoint removed without complaint")
	}
	if _, err := os.Stat(filepath.Join(mp, "precious")); err != nil {
		t.Fatal("content under a mountpoint was deleted")
	}
}
