package idmap

import (
	"os"
	"path/filepath"
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

// TestMain lets this test binary serve as the placeholder process
// NewUserNS starts.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HolderArg {
		os.Exit(HoldUntilEOF())
	}
	os.Exit(m.Run())
}
