package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// An unprivileged container's root is mounted on its rootfs directory in
// the host's mount namespace while it runs (pre-start attaches it there for
// LXC). Its setuid programs belong to the container's root on the host
// (host uid unprivBase): a local user who reached them could run them and
// become that uid, and act on the container's processes and files. What
// keeps every other local user out is the container's directory, 0710
// root:GID (GID the container's root group), which init writes and
// pre-start insists on.

// euidProgram is a static program that prints its effective uid (busybox
// drops a setuid bit's privileges for its applets, so it cannot show one).
const euidProgram = `package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println(os.Geteuid()) }
`

// setuidTemplate is the suite's busybox template with /bin/euid, a setuid
// root copy of euidProgram, as a squashfs.
func setuidTemplate(t *testing.T) string {
	t.Helper()
	dir := testDir(t)
	tree := filepath.Join(dir, "tree")
	if out, err := exec.Command("cp", "-a", tplDir, tree).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	src := filepath.Join(dir, "euid.go")
	if err := os.WriteFile(src, []byte(euidProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tree, "bin", "euid")
	build := exec.Command("go", "build", "-o", bin, src)
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build euid: %v %s", err, out)
	}
	if err := os.Chown(bin, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	tpl := filepath.Join(dir, "setuid.squashfs")
	if out, err := exec.Command("mksquashfs", tree, tpl, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v %s", err, out)
	}
	return tpl
}

// asUser runs argv as user through runuser, as a local user would run it.
func asUser(user string, argv ...string) (string, error) {
	out, err := exec.Command("runuser", append([]string{"-u", user, "--"}, argv...)...).CombinedOutput()
	return string(out), err
}

// A real non-root user (useradd) cannot reach a running unprivileged
// container's root on the host: not its directory, not the rootfs, not
// through /proc/PID/root of its init; and cannot run its setuid programs
// from there. Shown to matter: with the directory opened to others
// (0711), the same user runs the container's setuid program and becomes
// the container's root on the host. Pre-start refuses a rootfs every
// local user can reach (naming the directory and the fix, nothing
// mounted), and closes the 0711 root:root directory of an earlier init
// with a warning.
func TestOtherUsersCannotReachUnprivilegedRoot(t *testing.T) {
	requireEnv(t)
	if _, err := exec.LookPath("runuser"); err != nil {
		t.Skip("runuser is not installed (util-linux): the test runs commands as a real non-root user")
	}
	// A user of this run's own (its name has the run's PID): runs of the
	// suite on one machine at once do not remove each other's.
	user, _ := testUser(t)
	hook := "lxc-hook-loopimg"
	c := initUnpriv(t, hook, setuidTemplate(t), "--size", "64M")
	rootfs := filepath.Join(c.dir, "rootfs")
	euid := filepath.Join(rootfs, "bin", "euid")
	container := strconv.FormatUint(uint64(unprivBase), 10)

	if u, g, m := ownerAndMode(t, c.dir); u != 0 || g != unprivBase || m != 0o710 {
		t.Fatalf("init made the container's directory %d:%d %04o, want 0:%d 0710", u, g, m, unprivBase)
	}
	c.mustStart()
	// Host root sees the container's root on the rootfs directory, with
	// the setuid program the container's root's on the host.
	if u, _, m := ownerAndMode(t, euid); u != unprivBase || m&0o4000 == 0 {
		t.Fatalf("%s on the host: owner %d mode %04o, want %d with the setuid bit (the container's root is not mounted there?)", euid, u, m, unprivBase)
	}
	for _, argv := range [][]string{
		{"ls", c.dir},
		{"ls", rootfs},
		{"ls", "-l", euid},
		{euid},
		{"ls", "/proc/" + strconv.Itoa(c.pid()) + "/root/bin"},
	} {
		out, err := asUser(user, argv...)
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Fatalf("as %s, %q: %v\n%s\nwant it refused with Permission denied", user, argv, err, out)
		}
	}

	// What the mode prevents: opened to others, the user runs the
	// container's setuid program as the container's root on the host.
	if err := os.Chmod(c.dir, 0o711); err != nil {
		t.Fatal(err)
	}
	out, err := asUser(user, euid)
	if err := os.Chmod(c.dir, 0o710); err != nil {
		t.Fatal(err)
	}
	if err != nil || strings.TrimSpace(out) != container {
		t.Fatalf("with the directory 0711, %s running %s: %v %q; want effective uid %s (the test's setuid program does not show what the mode guards)", user, euid, err, out, container)
	}
	c.stop(false)
	assertNoLoops(t, c.dir, "after lxc-stop")

	// A rootfs every local user can reach is refused at start.
	if err := os.Chmod(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.start(); err == nil {
		c.stop(true)
		t.Fatal("pre-start accepted a rootfs every local user can reach")
	}
	line := strings.Join(c.hookLogLines("ERROR"), "\n")
	for _, want := range []string{"pre-start", rootfs, "can be reached by every local user", "chmod o-rwx " + c.dir} {
		if !strings.Contains(line, want) {
			t.Fatalf("the refusal lacks %q:\n%s", want, line)
		}
	}
	if m := mountsUnder(c.dir); len(m) > 0 {
		t.Fatalf("a refused start left mounts: %v", m)
	}
	assertNoLoops(t, c.dir, "after the refused start")

	// An earlier init's layout (0711 root:root) is closed at start.
	if err := os.Chown(c.dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(c.dir, 0o711); err != nil {
		t.Fatal(err)
	}
	c.mustStart()
	if u, g, m := ownerAndMode(t, c.dir); u != 0 || g != unprivBase || m != 0o710 {
		t.Fatalf("pre-start left the earlier layout's directory %d:%d %04o, want 0:%d 0710", u, g, m, unprivBase)
	}
	if w := strings.Join(c.hookLogLines("WARN"), "\n"); !strings.Contains(w, "was open to every local user") {
		t.Fatalf("closing the directory was not logged as a warning:\n%s", w)
	}
	if out, err := asUser(user, euid); err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("as %s after pre-start closed the directory, %s: %v %s", user, euid, err, out)
	}
	c.stop(false)
	assertNoLoops(t, c.dir, "after the last lxc-stop")
}
