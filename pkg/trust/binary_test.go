package trust

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets a test run this test binary from another place and ask it
// to check itself.
func TestMain(m *testing.M) {
	switch os.Getenv("TRUSTED_CHILD") {
	case "running":
		if err := Running(); err != nil {
			os.Stdout.WriteString(err.Error())
			os.Exit(3)
		}
		os.Exit(0)
	case "time-running":
		const n = 2000
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if err := Running(); err != nil {
				os.Stdout.WriteString(err.Error())
				os.Exit(3)
			}
		}
		fmt.Print(time.Since(t0).Nanoseconds() / n)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// rootDir is a fresh directory whose every parent is root's (t.TempDir is
// 0700 under the sticky /tmp); skipped where TMPDIR is not like that.
func rootDir(t *testing.T) string {
	t.Helper()
	needRoot(t)
	d := t.TempDir()
	if _, err := walkBinary(d, d, false); err != nil {
		t.Skipf("the test directory itself is not trusted here (TMPDIR?): %v", err)
	}
	return d
}

func writeBin(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func wantRefused(t *testing.T, err error, at, why string) {
	t.Helper()
	var e *BinaryError
	if !errors.As(err, &e) {
		t.Fatalf("want a refusal naming %s (%s), got %v", at, why, err)
	}
	if e.At != at || !strings.Contains(e.Why, why) {
		t.Fatalf("want %s %s, got %q", at, why, err)
	}
}

func TestRootOwnedAccepted(t *testing.T) {
	d := rootDir(t)
	bin := filepath.Join(d, "usr", "bin", "lxc-hook-x")
	writeBin(t, bin)
	got, err := Executable(bin)
	if err != nil || got != bin {
		t.Fatalf("Executable(%s) = %q, %v", bin, got, err)
	}
}

func TestWritableDirectoryRefused(t *testing.T) {
	d := rootDir(t)
	bin := filepath.Join(d, "opt", "bin", "lxc-hook-x")
	writeBin(t, bin)
	os.Chmod(filepath.Join(d, "opt"), 0o775)
	_, err := Executable(bin)
	wantRefused(t, err, filepath.Join(d, "opt"), "writable by its group")
	if !strings.Contains(err.Error(), "drwxrwxr-x") || !strings.HasPrefix(err.Error(), bin+" can be replaced") {
		t.Fatalf("message: %q", err)
	}
	os.Chmod(filepath.Join(d, "opt"), 0o757)
	_, err = Executable(bin)
	wantRefused(t, err, filepath.Join(d, "opt"), "writable by others")
	// Sticky and root's, like /tmp: others cannot replace root's entries.
	unix.Chmod(filepath.Join(d, "opt"), 0o1777)
	if _, err := Executable(bin); err != nil {
		t.Fatalf("under a root-owned sticky directory: %v", err)
	}
}

func TestUserOwnedRefused(t *testing.T) {
	d := rootDir(t)
	bin := filepath.Join(d, "home", "alice", "bin", "lxc-hook-x")
	writeBin(t, bin)
	home := filepath.Join(d, "home", "alice")
	os.Chown(home, 4242, 4242)
	_, err := Executable(bin)
	wantRefused(t, err, home, "not owned by root")
	if !strings.Contains(err.Error(), "uid 4242") {
		t.Fatalf("message names no owner: %q", err)
	}
	os.Chown(home, 0, 0)
	// The file itself: the user's, or writable by others.
	os.Chown(bin, 4242, 4242)
	_, err = Executable(bin)
	wantRefused(t, err, bin, "not owned by root")
	os.Chown(bin, 0, 0)
	os.Chmod(bin, 0o757)
	_, err = Executable(bin)
	wantRefused(t, err, bin, "writable by others")
	// A user's file in a sticky directory: its owner can replace it.
	os.Chmod(bin, 0o755)
	unix.Chmod(filepath.Dir(bin), 0o1777)
	os.Chown(bin, 4242, 4242)
	_, err = Executable(bin)
	wantRefused(t, err, bin, "not owned by root")
}

// The package's layout: /usr/share/lxc/hooks/X -> ../../../bin/X. The link
// is followed and the directories of its target are checked too.
func TestSymlinkFollowedAndChecked(t *testing.T) {
	d := rootDir(t)
	bin := filepath.Join(d, "usr", "bin", "lxc-hook-x")
	writeBin(t, bin)
	hooks := filepath.Join(d, "usr", "share", "lxc", "hooks")
	os.MkdirAll(hooks, 0o755)
	link := filepath.Join(hooks, "lxc-hook-x")
	os.Symlink("../../../bin/lxc-hook-x", link)
	got, err := Executable(link)
	if err != nil || got != bin {
		t.Fatalf("Executable(%s) = %q, %v; want %s", link, got, err, bin)
	}
	// The target's directory handed to a user: refused through the link.
	os.Chown(filepath.Join(d, "usr", "bin"), 4242, 4242)
	_, err = Executable(link)
	wantRefused(t, err, filepath.Join(d, "usr", "bin"), "not owned by root")
	os.Chown(filepath.Join(d, "usr", "bin"), 0, 0)
	// A user's own symlink (its owner may replace it in a sticky dir).
	os.Remove(link)
	os.Symlink(bin, link)
	unix.Lchown(link, 4242, 4242)
	_, err = Executable(link)
	wantRefused(t, err, link, "not owned by root")
	// A loop of links ends.
	a, b := filepath.Join(d, "a"), filepath.Join(d, "b")
	os.Symlink(b, a)
	os.Symlink(a, b)
	if _, err := Executable(a); !errors.Is(err, unix.ELOOP) {
		t.Fatalf("link loop: %v", err)
	}
}

func TestNotAbsoluteOrNotFile(t *testing.T) {
	if _, err := Executable("bin/lxc-hook-x"); !IsUntrusted(err) || !strings.Contains(err.Error(), "not an absolute path") {
		t.Fatalf("relative path: %v", err)
	}
	d := rootDir(t)
	if _, err := Executable(d); !IsUntrusted(err) || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("directory: %v", err)
	}
	if _, err := Executable(filepath.Join(d, "missing")); err == nil || IsUntrusted(err) || !errors.Is(err, unix.ENOENT) {
		t.Fatalf("missing file: %v", err)
	}
}

// Running: this test binary, copied into a directory others can write and
// run from there, refuses itself; from a root-owned directory it passes.
func TestRunning(t *testing.T) {
	d := rootDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	run := func(bin string) (string, error) {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "TRUSTED_CHILD=running")
		out, err := cmd.Output()
		return string(out), err
	}
	good := filepath.Join(d, "good", "hook")
	os.Mkdir(filepath.Dir(good), 0o755)
	os.WriteFile(good, b, 0o755)
	if out, err := run(good); err != nil {
		t.Fatalf("from a root-owned directory: %v %s", err, out)
	}
	bad := filepath.Join(d, "bad", "hook")
	os.Mkdir(filepath.Dir(bad), 0o777)
	os.Chmod(filepath.Dir(bad), 0o777)
	os.WriteFile(bad, b, 0o755)
	out, err := run(bad)
	if err == nil || !strings.Contains(out, filepath.Dir(bad)+" (owner uid 0") || !strings.Contains(out, "writable by others") {
		t.Fatalf("from a world-writable directory: %v %q", err, out)
	}
	// Through a trusted link into the bad directory: the file that runs
	// is what counts.
	link := filepath.Join(d, "good", "link")
	os.Symlink(bad, link)
	if out, err := run(link); err == nil || !strings.Contains(out, "writable by others") {
		t.Fatalf("through a link: %v %q", err, out)
	}
	// And a link in the bad directory to the good file: argv[0] counts.
	link2 := filepath.Join(d, "bad", "link")
	os.Symlink(good, link2)
	if out, err := run(link2); err == nil || !strings.Contains(out, "writable by others") {
		t.Fatalf("through a link in a writable directory: %v %q", err, out)
	}
}

// The cost the hooks pay at every start (see the package comment of
// Running): a handful of lstat calls.
func BenchmarkRunning(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Running()
	}
}

// The package's layout (a link in usr/share/lxc/hooks to usr/bin), below
// the test's temporary directory: what a hook's check of argv[0] walks.
func BenchmarkExecutablePackageLayout(b *testing.B) {
	d := b.TempDir()
	bin := filepath.Join(d, "usr", "bin", "lxc-hook-x")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.WriteFile(bin, []byte("x"), 0o755)
	hooks := filepath.Join(d, "usr", "share", "lxc", "hooks")
	os.MkdirAll(hooks, 0o755)
	link := filepath.Join(hooks, "lxc-hook-x")
	os.Symlink("../../../bin/lxc-hook-x", link)
	if _, err := Executable(link); err != nil {
		b.Skip(err)
	}
	b.Run("Executable", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Executable(link)
		}
	})
	// Running as an installed hook does it: this test binary copied to
	// usr/bin, run through the link (argv[0], as LXC's sh passes it),
	// timing 2000 checks itself.
	b.Run("RunningInstalled", func(b *testing.B) {
		self, _ := os.Executable()
		data, err := os.ReadFile(self)
		if err != nil {
			b.Fatal(err)
		}
		os.WriteFile(bin, data, 0o755)
		for i := 0; i < b.N; i++ {
			cmd := exec.Command(link)
			cmd.Env = append(os.Environ(), "TRUSTED_CHILD=time-running")
			out, err := cmd.Output()
			ns, perr := strconv.Atoi(string(out))
			if err != nil || perr != nil {
				b.Fatalf("%v %s", err, out)
			}
			b.ReportMetric(float64(ns), "ns/check")
		}
	})
}
