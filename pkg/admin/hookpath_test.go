package admin

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHookPath(t *testing.T) {
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin", "lxc-hook-loopimg")
	hooks := filepath.Join(tmp, "hooks")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.MkdirAll(hooks, 0o755)
	os.WriteFile(bin, []byte("x"), 0o755)
	// No hook in LXC's directory: the binary's own path.
	if got := hookPath(hooks, bin, "lxc-hook-loopimg"); got != bin {
		t.Fatalf("got %s", got)
	}
	// The package's layout: a symlink there to this binary.
	os.Symlink("../bin/lxc-hook-loopimg", filepath.Join(hooks, "lxc-hook-loopimg"))
	if got := hookPath(hooks, bin, "lxc-hook-loopimg"); got != filepath.Join(hooks, "lxc-hook-loopimg") {
		t.Fatalf("got %s", got)
	}
	// Another build elsewhere (the source tree's bin/): its own path.
	other := filepath.Join(tmp, "other")
	os.WriteFile(other, []byte("y"), 0o755)
	if got := hookPath(hooks, other, "lxc-hook-loopimg"); got != other {
		t.Fatalf("got %s", got)
	}
}
