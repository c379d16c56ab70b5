package runner

import (
	"bytes"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
)

type fakeBackend struct{ upper string }

func (f *fakeBackend) Program() string     { return "lxc-hook-fake" }
func (f *fakeBackend) Category() string    { return "fake" }
func (f *fakeBackend) Synopsis() string    { return "--upper DIR" }
func (f *fakeBackend) Description() string { return "A fake." }
func (f *fakeBackend) MountSource() string { return "lxc-hook-fake" }
func (f *fakeBackend) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&f.upper, "upper", "", "`DIR`")
}
func (f *fakeBackend) Validate(string) error                         { return nil }
func (f *fakeBackend) PrepareWritable(c *Context) (*Writable, error) { panic("not in unit tests") }
func (f *fakeBackend) MountUnion(*Context, []string, *Writable, string) error {
	panic("not in unit tests")
}

func clearLXCEnv(t *testing.T) {
	for _, k := range []string{"LXC_NAME", "LXC_HOOK_VERSION", "LXC_HOOK_TYPE", "LXC_CONFIG_FILE", "LXC_ROOTFS_PATH", "LXC_LOG_LEVEL"} {
		t.Setenv(k, "")
	}
}

func TestByHandPrintsUsageAndExits2(t *testing.T) {
	clearLXCEnv(t)
	var out, errb bytes.Buffer
	if code := Main(&fakeBackend{}, nil, &out, &errb); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errb.String(), "not run by LXC") || !strings.Contains(errb.String(), "Usage: lxc-hook-fake --upper DIR") {
		t.Fatalf("stderr: %s", errb.String())
	}
}

func TestHelpAndVersion(t *testing.T) {
	clearLXCEnv(t)
	var out, errb bytes.Buffer
	if code := Main(&fakeBackend{}, []string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "-upper DIR") {
		t.Fatalf("--help: %d %q", code, out.String())
	}
	out.Reset()
	if code := Main(&fakeBackend{}, []string{"--version"}, &out, &errb); code != 0 || out.String() != "lxc-hook-fake dev\n" {
		t.Fatalf("--version: %d %q", code, out.String())
	}
}

func TestUnknownFlagByHand(t *testing.T) {
	clearLXCEnv(t)
	var out, errb bytes.Buffer
	if code := Main(&fakeBackend{}, []string{"--nope"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if first := strings.SplitN(errb.String(), "\n", 2)[0]; first != "lxc-hook-fake: unknown flag --nope (see --help)" {
		t.Fatalf("first line: %q", first)
	}
}

func TestUnknownFlagUnderLXCNamesTheHook(t *testing.T) {
	clearLXCEnv(t)
	t.Setenv("LXC_NAME", "web1")
	t.Setenv("LXC_ROOTFS_PATH", "dir:/var/lib/lxc/web1/rootfs")
	var out, errb bytes.Buffer
	code := Main(&fakeBackend{}, []string{"--nope", "x", "web1", "lxc", "pre-mount"}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	if got := errb.String(); got != "lxc-hook-fake: web1: pre-mount: error: unknown flag --nope (see --help)\n" {
		t.Fatalf("stderr: %q", got)
	}
	// The same failure in a stop hook exits 0: LXC only logs it.
	errb.Reset()
	if code := Main(&fakeBackend{}, []string{"--nope", "web1", "lxc", "stop"}, &out, &errb); code != 0 {
		t.Fatalf("stop hook exit %d", code)
	}
}

func TestMountHookRefused(t *testing.T) {
	clearLXCEnv(t)
	t.Setenv("LXC_NAME", "web1")
	t.Setenv("LXC_ROOTFS_PATH", "/var/lib/lxc/web1/rootfs")
	var out, errb bytes.Buffer
	if code := Main(&fakeBackend{}, []string{"web1", "lxc", string(hook.Mount)}, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errb.String(), "must run as lxc.hook.pre-mount") {
		t.Fatalf("stderr: %q", errb.String())
	}
}

func TestSelectOursDeepestFirst(t *testing.T) {
	// See stop.go: the union mount by source, the runtime directory's
	// mounts, filesystems on our loop devices; LXC's own mounts untouched.
	ms := parseMounts(t, `
20 1 0:50 / / rw - overlay lxc-hook-fake rw
21 20 0:5 / /proc rw - proc proc rw
22 20 7:3 / /run/lxc-hooks/web1-x/image rw - ext4 /dev/loop3 rw
23 22 0:51 / /run/lxc-hooks/web1-x/image/sub rw - tmpfs none rw
24 20 7:9 / /mnt/other rw - ext4 /dev/loop9 rw
25 20 7:4 / /srv/lower rw - squashfs /dev/loop4 ro
`)
	got := selectOurs(ms, "lxc-hook-fake", "/run/lxc-hooks/web1-x", map[string]bool{"7:4": true})
	var mps []string
	for _, m := range got {
		mps = append(mps, m.Mountpoint)
	}
	want := "/run/lxc-hooks/web1-x/image/sub /run/lxc-hooks/web1-x/image /srv/lower /"
	if strings.Join(mps, " ") != want {
		t.Fatalf("got  %v\nwant %s", mps, want)
	}
}

func TestCheckConfig(t *testing.T) {
	if err := CheckConfig("", "/l/b/config", "p"); err != nil {
		t.Fatal("no --config: no check")
	}
	if err := CheckConfig("/l/a/config", "/l/a/./config", "p"); err != nil {
		t.Fatal(err)
	}
	if err := CheckConfig("/l/a/config", "/l/b/config", "lxc-hook-x"); err == nil || !strings.Contains(err.Error(), `"lxc-hook-x copy SRC DST"`) {
		t.Fatalf("copied config: %v", err)
	}
	// A moved lxcpath: the old config is gone; the move's remedy comes
	// first, the copy's is still named.
	dir := t.TempDir()
	gone, here := filepath.Join(dir, "old", "c", "config"), filepath.Join(dir, "new", "c", "config")
	err := CheckConfig(gone, here, "lxc-hook-x")
	if err == nil || !strings.Contains(err.Error(), "no longer exists") || !strings.Contains(err.Error(), "moved, with its layer, set --config to "+here) || !strings.Contains(err.Error(), `"lxc-hook-x copy SRC DST"`) {
		t.Fatalf("moved config: %v", err)
	}
}

// --help's "Run by hand" line lists the commands the binary was given
// (package admin's table), all of them.
func TestHelpListsHandCommands(t *testing.T) {
	clearLXCEnv(t)
	saved := HandCommands
	HandCommands = []string{"init", "status", "template"}
	defer func() { HandCommands = saved }()
	var out, errb bytes.Buffer
	Main(&fakeBackend{}, []string{"--help"}, &out, &errb)
	if !strings.Contains(out.String(), "\nRun by hand: lxc-hook-fake init|status|template ... (each with --help)\n") {
		t.Fatalf("--help:\n%s", out.String())
	}
}
