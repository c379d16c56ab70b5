package idmap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The first call makes the namespace (one process) and pins it; the next
// opens the pin, the same namespace, and makes nothing. A stale empty file
// where the pin should be (a start killed half-way) is replaced.
func TestPinnedUserNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: user namespaces with another uid's mapping, bind mounts")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "userns")
	m, _ := ParseLXC([]string{"u 0 200000 65536", "g 0 200000 65536"})
	path := filepath.Join(dir, pinName(m))
	t.Cleanup(func() { unix.Unmount(path, unix.MNT_DETACH) })

	os.MkdirAll(dir, 0o700)
	os.WriteFile(path, nil, 0o400) // stale
	ns1, note, err := PinnedUserNS(dir, exe, m)
	if err != nil {
		t.Fatal(err)
	}
	defer ns1.Close()
	if note == "" {
		t.Fatal("the first call says it made nothing")
	}
	ns2, note, err := PinnedUserNS(dir, exe, m)
	if err != nil {
		t.Fatal(err)
	}
	defer ns2.Close()
	if note != "" {
		t.Fatalf("the second call made one again: %s", note)
	}
	var a, b unix.Stat_t
	unix.Fstat(int(ns1.Fd()), &a)
	unix.Fstat(int(ns2.Fd()), &b)
	if a.Ino != b.Ino || a.Dev != b.Dev {
		t.Fatal("the pin is another namespace than the one made")
	}
	if !isUserNS(ns2) {
		t.Fatal("the pin is not a user namespace")
	}
}

// Past MaxPins a new pin drops the others; namespaces already opened from
// them stay usable, and the dropped mappings are made again when asked.
func TestPinsBounded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: user namespaces with another uid's mapping, bind mounts")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	defer func(n int) { MaxPins = n }(MaxPins)
	MaxPins = 2
	dir := filepath.Join(t.TempDir(), "userns")
	var maps []*Mapping
	for _, base := range []string{"300000", "400000", "500000"} {
		m, err := ParseLXC([]string{"u 0 " + base + " 65536", "g 0 " + base + " 65536"})
		if err != nil {
			t.Fatal(err)
		}
		maps = append(maps, m)
		t.Cleanup(func() { unix.Unmount(filepath.Join(dir, pinName(m)), unix.MNT_DETACH) })
	}
	// Not a pin: a link to a mount elsewhere (only root can put one
	// there) is neither followed nor removed.
	victim := filepath.Join(t.TempDir(), "victim")
	os.Mkdir(victim, 0o700)
	if err := unix.Mount(victim, victim, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(victim, unix.MNT_DETACH) })
	os.MkdirAll(dir, 0o700)
	if err := os.Symlink(victim, filepath.Join(dir, "zzlink")); err != nil {
		t.Fatal(err)
	}
	var first *os.File
	for i, m := range maps {
		ns, note, err := PinnedUserNS(dir, exe, m)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		if i == 0 {
			first = ns
		}
		if dropped := strings.Contains(note, "older pins dropped"); dropped != (i == 2) {
			t.Fatalf("pin %d of MaxPins 2: %q", i+1, note)
		}
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			left = append(left, e.Name())
		}
	}
	if len(left) != 2 || left[0] != pinName(maps[2]) || left[1] != "zzlink" {
		t.Fatalf("left: %v, want only %s and the link", left, pinName(maps[2]))
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); !strings.Contains(string(mi), " "+victim+" ") {
		t.Fatal("pruning unmounted what a link in the pin directory points to")
	}
	if !isUserNS(first) {
		t.Fatal("a namespace opened from a dropped pin is no longer usable")
	}
	_, note, err := PinnedUserNS(dir, exe, maps[0])
	if err != nil || !strings.Contains(note, "made a user namespace") {
		t.Fatalf("a dropped mapping is not made again: %q %v", note, err)
	}
}

// TestMain lets this test binary serve as the placeholder process
// NewUserNS starts.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HolderArg {
		os.Exit(HoldUntilEOF())
	}
	os.Exit(m.Run())
}
