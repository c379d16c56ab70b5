package runfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Symlinks planted in a runtime directory are replaced or refused, never
// followed: the file they point at keeps its content.
func TestNeverFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o600)

	os.Symlink(victim, filepath.Join(dir, "state"))
	if err := Write(filepath.Join(dir, "state"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(filepath.Join(dir, "state")); !fi.Mode().IsRegular() {
		t.Fatal("the symlink was not replaced")
	}
	os.Symlink(victim, filepath.Join(dir, "users"))
	if f, err := Open(filepath.Join(dir, "users")); err == nil {
		f.Close()
		t.Fatal("opened through a symlink")
	}
	os.Symlink(t.TempDir(), filepath.Join(dir, "mp"))
	if err := Mkdir(filepath.Join(dir, "mp")); err == nil {
		t.Fatal("a symlink accepted as a mountpoint")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the symlink's target was written: %q", b)
	}
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if err := Dir(open); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("a world-writable runtime directory: %v", err)
	}
}

// On the host, a runtime directory owned by uid 65534 (nobody, a real
// user there) is someone else's: refused like any other user's.
func TestNobodysDirRefusedOnHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a directory to uid 65534")
	}
	if !inInitialUserNS() {
		t.Skip("runs in a user namespace, where 65534 is root's overflow uid")
	}
	d := filepath.Join(t.TempDir(), "rd")
	os.Mkdir(d, 0o755)
	if err := os.Chown(d, overflowUID, overflowUID); err != nil {
		t.Fatal(err)
	}
	if err := Dir(d); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("a directory of nobody's accepted on the host: %v", err)
	}
}
