package admin

import (
	"os"
	"path/filepath"
	"strings"
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

// checkHookBinaries looks at every lxc.hook.* line that runs one of the
// hooks (quoted paths too) and at nothing else.
func TestCheckHookBinaries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: root-owned directories are what is trusted")
	}
	tmp := t.TempDir()
	good := filepath.Join(tmp, "root bin", "lxc-hook-loopimg")
	os.MkdirAll(filepath.Dir(good), 0o755)
	os.WriteFile(good, []byte("x"), 0o755)
	bad := filepath.Join(tmp, "open", "lxc-hook-loopimg")
	os.MkdirAll(filepath.Dir(bad), 0o755)
	os.Chmod(filepath.Dir(bad), 0o777)
	os.WriteFile(bad, []byte("x"), 0o755)
	ok := "lxc.hook.pre-mount = '" + good + "' --size 1G\n" +
		"lxc.hook.stop = " + "'" + good + "'\n" +
		"lxc.hook.start-host = " + bad + "-not-ours\n" + // another program's hook
		"# lxc.hook.clone = " + bad + "\n" +
		"lxc.log.file = " + bad + "\n"
	if err := checkHookBinaries(ok); err != nil {
		t.Fatalf("trusted config refused: %v", err)
	}
	err := checkHookBinaries(ok + "lxc.hook.post-stop = " + bad + " --size 1G\n")
	if err == nil || !strings.HasPrefix(err.Error(), "lxc.hook.post-stop = "+bad+": "+bad+" can be replaced by a non-root user: "+filepath.Dir(bad)) {
		t.Fatalf("got %v", err)
	}
}
