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
		Loops:       []Loop{{Role: "image", Device: "/dev/loop3", Number: 3, Diskseq: 9, Dev: 65024, Ino: 12, MountNS: 7, MountNSID: 88, Mounts: []uint64{1 << 40, 5}, Backing: "/srv/a b=c\".img"}},
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

// A record written by the version before JSON records, as a container
// started under it left it: the new hooks must read it to stop it.
func TestReadsOldKeyValueRecord(t *testing.T) {
	old := `container "web 1"
config "/var/lib/lxc/web 1/config"
mount_ns 4026532301
loop role="lower" device="/dev/loop2" number=2 diskseq=41 dev=2049 ino=131 mount_ns=4026532301 shared=true backing="/srv/t/debian.squashfs"
loop role="image" device="/dev/loop3" number=3 diskseq=42 dev=2049 ino=12 mount_ns=4026532301 shared=false backing="/srv/a b=c\".img"
leftover role="image" device="/dev/loop7" number=7 diskseq=9 dev=2049 ino=12 mount_ns=4026532299 shared=false backing="/srv/x.img"
mountpoint "/run/lxc-hooks/web_1-1a2b3c4d/lower0"
mountpoint "/run/lxc-hooks/web_1-1a2b3c4d/image"
`
	d := Dir{Path: t.TempDir()}
	os.WriteFile(d.file(), []byte(old), 0o600)
	r, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := &Record{Container: "web 1", ConfigFile: "/var/lib/lxc/web 1/config", MountNS: 4026532301,
		Loops: []Loop{
			{Role: "lower", Device: "/dev/loop2", Number: 2, Diskseq: 41, Dev: 2049, Ino: 131, MountNS: 4026532301, Shared: true, Backing: "/srv/t/debian.squashfs"},
			{Role: "image", Device: "/dev/loop3", Number: 3, Diskseq: 42, Dev: 2049, Ino: 12, MountNS: 4026532301, Backing: "/srv/a b=c\".img"},
		},
		Leftovers:   []Loop{{Role: "image", Device: "/dev/loop7", Number: 7, Diskseq: 9, Dev: 2049, Ino: 12, MountNS: 4026532299, Backing: "/srv/x.img"}},
		Mountpoints: []string{"/run/lxc-hooks/web_1-1a2b3c4d/lower0", "/run/lxc-hooks/web_1-1a2b3c4d/image"}}
	if fmt.Sprintf("%+v", r) != fmt.Sprintf("%+v", want) {
		t.Fatalf("old record read as\n%+v\nwant\n%+v", r, want)
	}
	// Saved again (post-stop keeps a leftover), it is JSON and reads back the same.
	if err := d.Save(r); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(d.file()); !strings.HasPrefix(string(b), "{") {
		t.Fatalf("not JSON: %s", b)
	}
	r2, err := d.Load()
	if err != nil || fmt.Sprintf("%+v", r2) != fmt.Sprintf("%+v", want) {
		t.Fatalf("%+v %v", r2, err)
	}
}
