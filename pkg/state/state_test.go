package state

import (
	"fmt"
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

func TestCodecRoundTrip(t *testing.T) {
	in := &Record{Container: "web \"1\"", ConfigFile: "/var/lib/lxc/web 1/config", MountNS: 4026532301,
		Loops:       []Loop{{Role: "image", Device: "/dev/loop3", Number: 3, Diskseq: 9, Dev: 65024, Ino: 12, MountNS: 7, Backing: "/srv/a b=c\".img"}},
		Leftovers:   []Loop{{Role: "lower", Device: "/dev/loop4", Number: 4, Shared: true, Backing: "/t.sqfs"}},
		Mountpoints: []string{"/run/x/lower0", "/run/x/image"}}
	d := Dir{Path: t.TempDir()}
	if err := d.Save(in); err != nil {
		t.Fatal(err)
	}
	out, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", out) != fmt.Sprintf("%+v", in) {
		t.Fatalf("round trip:\n%+v\n%+v", in, out)
	}
	os.WriteFile(d.file(), []byte("loop role=\"x\" number=abc\n"), 0o600)
	if _, err := d.Load(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad record: %v", err)
	}
}
