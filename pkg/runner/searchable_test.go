package runner

import (
	"os"
	"path/filepath"
	"testing"
)

// A symlink planted where a runtime directory goes is refused, and its
// target keeps its mode (searchable chmods: it must not follow links).
func TestSearchableRefusesSymlink(t *testing.T) {
	victim := t.TempDir()
	os.Chmod(victim, 0o700)
	rd := filepath.Join(t.TempDir(), "run")
	os.Mkdir(rd, 0o700)
	link := filepath.Join(rd, "ctr-0000")
	os.Symlink(victim, link)
	if err := searchable(rd, link); err == nil {
		t.Fatal("a symlinked runtime directory accepted")
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o700 {
		t.Fatalf("the link's target was chmodded to %o", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(rd); fi.Mode().Perm() != 0o711 {
		t.Fatalf("the runtime root is %o, want 0711", fi.Mode().Perm())
	}
}
