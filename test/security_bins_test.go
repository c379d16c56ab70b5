package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The hooks run as root at every start, stop and copy: a hook binary a
// non-root user can replace is that user's way to root. These tests use a
// real user (useradd) and real directories it owns.

// testUser creates a system user for one test (no home, no login, no
// subordinate ID ranges, which would overlap root's) and removes it at
// cleanup. It returns the name and uid.
var testUserSeq atomic.Int32

func testUser(t *testing.T) (string, int) {
	t.Helper()
	needTools(t, "apt-get install passwd", "useradd", "userdel")
	// A name of this run and this call's own: runs of the suite on one
	// machine at once, or tests of one run in parallel, never remove
	// each other's user.
	name := fmt.Sprintf("lxchk%d-%d", os.Getpid()%100000, testUserSeq.Add(1))
	// Others on the machine may hold the lock on /etc/passwd for a moment
	// (useradd's "cannot lock"): a few bounded retries for that only.
	var out []byte
	var err error
	for i := 0; i < 20; i++ {
		out, err = exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lock") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	idOut, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(strings.TrimSpace(string(idOut)))
	return name, uid
}

// userBinary copies the test build of hook into a directory under /tmp
// that the user owns (a checkout or a build of theirs), the file theirs
// too; the directory is removed at cleanup.
func userBinary(t *testing.T, user string, uid int, hook string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "bins-userbuild-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, hook)
	copyExecutable(t, filepath.Join(binDir, hook), bin)
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(bin, uid, uid); err != nil {
		t.Fatal(err)
	}
	// What the refusal is about: the user really can put another program
	// there (runuser: as that user, a rename over the binary).
	if _, err := exec.LookPath("runuser"); err == nil {
		swap := filepath.Join(dir, ".swap")
		if out, err := exec.Command("runuser", "-u", user, "--", "cp", "/bin/true", swap).CombinedOutput(); err != nil {
			t.Fatalf("as %s: cp into its directory: %v %s", user, err, out)
		}
		os.Remove(swap)
	}
	return bin
}

func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// runBin runs a hook binary by path with the PATH the tests use.
func runBin(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if coverDir != "" {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+coverDir)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// init run from a user's build is refused, naming the binary, the
// directory at fault with its owner and mode, and the fix, and writes no
// container; the same binary in a root-owned 0755 directory is accepted
// and its path is what the hook lines name.
func TestInitRefusesUserReplaceableBinary(t *testing.T) {
	requireEnv(t)
	user, uid := testUser(t)
	bin := userBinary(t, user, uid, "lxc-hook-loopimg")
	lxcpath := filepath.Join(testDir(t), "lxc")
	os.MkdirAll(lxcpath, 0o755)
	defaults := filepath.Join(workRoot, "default.conf")
	os.WriteFile(defaults, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"), 0o644)
	name := uniqueName("bins-init")

	out, err := runBin(bin, "init", name, "--template", tplSquash, "--size", "48M", "-P", lxcpath, "--default-config", defaults)
	if err == nil {
		t.Fatalf("init from %s (a directory of %s) was accepted:\n%s", bin, user, out)
	}
	for _, want := range []string{
		bin + " can be replaced by a non-root user",
		filepath.Dir(bin) + " (owner uid " + strconv.Itoa(uid) + " (" + user + "), mode drwx",
		"is not owned by root",
		"make install",
		"nothing was written",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("the refusal lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
		t.Fatalf("the refusal is %d lines, want one (and nothing before it):\n%s", n+1, out)
	}
	if exists(filepath.Join(lxcpath, name)) {
		t.Fatalf("a refused init left %s", filepath.Join(lxcpath, name))
	}

	// The same binary, installed: a root-owned 0755 directory.
	installed := filepath.Join(testDir(t), "prefix", "bin")
	if err := os.MkdirAll(installed, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(installed), 0o755)
	good := filepath.Join(installed, "lxc-hook-loopimg")
	copyExecutable(t, bin, good)
	if out, err := runBin(good, "init", name, "--template", tplSquash, "--size", "48M", "-P", lxcpath, "--default-config", defaults); err != nil {
		t.Fatalf("init from %s: %v\n%s", good, err, out)
	}
	cfg, err := os.ReadFile(filepath.Join(lxcpath, name, "config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ty := range []string{"pre-mount", "stop", "clone"} {
		if !strings.Contains(string(cfg), "lxc.hook."+ty+" = "+good+" ") {
			t.Fatalf("the config's lxc.hook.%s does not name %s:\n%s", ty, good, cfg)
		}
	}
}

// A container whose config (written by hand, or by an older init) names a
// binary a user can replace: status lists it with the error, the hooks
// refuse to start it with one ERROR line in its LXC log, copy refuses to
// copy it. The same config naming the installed binary starts.
func TestReplaceableBinaryInConfig(t *testing.T) {
	requireEnv(t)
	user, uid := testUser(t)
	bin := userBinary(t, user, uid, "lxc-hook-loopimg")
	dir := testDir(t)
	img := filepath.Join(dir, "layer.img")
	c := newCtr(t, ctrOpts{hookPath: bin, args: []string{"--lower", tplSquash, "--image", img, "--size", "48M"},
		hookTypes: []string{"pre-mount", "stop", "post-stop", "clone"}})

	// status, as text and JSON (run from the trusted test build).
	out, err := admin(t, "lxc-hook-loopimg", "status", c.name, "-P", c.lxcpath)
	if err != nil {
		t.Fatalf("status: %v %s", err, out)
	}
	if !strings.Contains(out, "  error:     lxc.hook.pre-mount = "+bin+": "+bin+" can be replaced by a non-root user") || !strings.Contains(out, "make install") || !strings.Contains(out, "  templates: "+tplSquash) {
		t.Fatalf("status does not show the error (and the rest):\n%s", out)
	}
	if s := status(t, c); !strings.Contains(s.Containers[0].Error, "can be replaced by a non-root user") || s.Containers[0].Hook != "lxc-hook-loopimg" {
		t.Fatalf("status --json: %+v", s.Containers[0])
	}

	// The start is refused by the hook itself, with the reason in the log.
	if err := c.start(); err == nil {
		t.Fatalf("%s started from %s, a binary %s can replace", c.name, bin, user)
	}
	if s := c.state(); s != "STOPPED" {
		t.Fatalf("%s is %s after the refused start", c.name, s)
	}
	var refusal []string
	for _, l := range c.hookLogLines("ERROR") {
		if strings.Contains(l, " - pre-mount - ") {
			refusal = append(refusal, l)
		}
	}
	if len(refusal) != 1 || !strings.Contains(refusal[0], bin+" can be replaced by a non-root user: "+filepath.Dir(bin)) || !strings.Contains(refusal[0], "the hook is refused") || !strings.Contains(refusal[0], "make install") {
		t.Fatalf("want one pre-mount ERROR line naming %s and the fix; the log:\n%s", bin, c.log())
	}
	if exists(img) {
		t.Fatalf("the refused start created the image %s", img)
	}
	assertNoLoops(t, dir, "after the refused start")

	// copy refuses to write a config naming it.
	dst := c.name + "-copy"
	out, err = admin(t, "lxc-hook-loopimg", "copy", c.name, dst, "-P", c.lxcpath)
	if err == nil || !strings.Contains(out, "can be replaced by a non-root user") || !strings.Contains(out, "make install") {
		t.Fatalf("copy of a container naming %s: %v\n%s", bin, err, out)
	}
	if exists(filepath.Join(c.lxcpath, dst)) {
		t.Fatalf("the refused copy left %s", filepath.Join(c.lxcpath, dst))
	}

	// lxc-copy runs the clone hook from that binary: the hook refuses,
	// so LXC refuses the copy and removes it; the reason is in the
	// source's log.
	if _, err := exec.LookPath("lxc-copy"); err == nil {
		clone := c.name + "-clone"
		out, err := exec.Command("lxc-copy", "-n", c.name, "-N", clone, "-P", c.lxcpath).CombinedOutput()
		if err == nil {
			t.Fatalf("lxc-copy through the clone hook of %s succeeded: %s", bin, out)
		}
		if exists(filepath.Join(c.lxcpath, clone)) {
			t.Fatalf("the refused lxc-copy left %s", filepath.Join(c.lxcpath, clone))
		}
		if !strings.Contains(c.log(), " - clone - copy of "+c.name+" to "+clone+" refused: "+bin+" can be replaced by a non-root user") {
			t.Fatalf("no clone refusal in %s's log:\n%s", c.name, lastLines(c.log(), 10))
		}
	}

	// The control: the same config with the installed binary starts.
	installed := filepath.Join(dir, "bin")
	os.Mkdir(installed, 0o755)
	good := filepath.Join(installed, "lxc-hook-loopimg")
	copyExecutable(t, bin, good)
	c.writeConfig(ctrOpts{hookPath: good, args: []string{"--lower", tplSquash, "--image", img, "--size", "48M"}})
	if s := status(t, c); s.Containers[0].Error != "" {
		t.Fatalf("status of the installed binary: error %q", s.Containers[0].Error)
	}
	c.mustStart()
	c.stop(true)
	assertNoLoops(t, dir, "after the stop")
}

// The LXC log is opened without following links. With no lxc.log.file and
// no lxc-start -o, the hook logs to $lxcpath/NAME/NAME.log where it
// exists, a path LXC itself does not open: a symlink planted there to a
// victim leaves the victim unchanged through a real (refused) start. Run
// as LXC runs it, with lxc.log.file a symlink, the hook's error still
// reaches stderr, saying why the log was not written.
func TestLogSymlinkNotFollowed(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	missing := filepath.Join(dir, "no-such-template")
	c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", noLogFile: true, args: []string{"--lower", missing}})
	if err := os.Symlink(victim, c.logFile); err != nil {
		t.Fatal(err)
	}
	if err := c.start(); err == nil {
		t.Fatal("started with a missing --lower")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("the victim behind %s was written:\n%s", c.logFile, b)
	}

	// lxc.log.file a symlink; the pre-mount hook run as LXC runs it.
	cfg := filepath.Join(c.dir, "config")
	f, _ := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("lxc.log.file = " + c.logFile + "\nlxc.log.level = INFO\n")
	f.Close()
	// A bad flag: the hook logs its error and exits before doing anything.
	cmd := exec.Command(filepath.Join(binDir, "lxc-hook-overlay"), "--nope", c.name, "lxc", "pre-mount")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LXC_NAME=" + c.name, "LXC_CONFIG_FILE=" + cfg,
		"LXC_ROOTFS_PATH=dir:" + c.rootfs, "LXC_ROOTFS_MOUNT=/usr/lib/x86_64-linux-gnu/lxc/rootfs", "LXC_HOOK_VERSION=0", "LXC_LOG_LEVEL=INFO"}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("pre-mount with a bad flag exited 0")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("the victim behind lxc.log.file was written:\n%s", b)
	}
	if !strings.Contains(stderr.String(), "pre-mount: error: unknown flag --nope") || !strings.Contains(stderr.String(), c.logFile+" is a symlink: refused") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
}

// A release build (scripts/build.sh, no build tag) has no kill points: the
// variable that kills the test build's hook at a point does nothing to it,
// and neither the variable's name, the package nor the tag is in the
// binary. The test build is the control: the same variable kills it.
func TestReleaseBuildHasNoKillPoints(t *testing.T) {
	requireEnv(t)
	needTools(t, "apt-get install git; scripts/build.sh takes the version from it", "git")
	dir := testDir(t)
	rel := filepath.Join(dir, "release")
	if out, err := exec.Command(filepath.Join(repoRoot(), "scripts", "build.sh"), rel).CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh: %v\n%s", err, out)
	}
	for _, c := range []struct {
		bin     string
		release bool
	}{{filepath.Join(rel, "lxc-hook-loopimg"), true}, {filepath.Join(binDir, "lxc-hook-loopimg"), false}} {
		b, err := os.ReadFile(c.bin)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"LXC_HOOKS_TEST_KILLPOINT", "pkg/killpoint", "pre-mount:after-attach"} {
			if has := strings.Contains(string(b), s); has == c.release {
				t.Fatalf("%s (release %v) contains %q: %v", c.bin, c.release, s, has)
			}
		}
		m, err := exec.Command("go", "version", "-m", c.bin).CombinedOutput()
		if err != nil {
			t.Fatalf("go version -m %s: %v %s", c.bin, err, m)
		}
		if has := strings.Contains(string(m), "lxchooks_testhooks"); has == c.release {
			t.Fatalf("go version -m %s (release %v):\n%s", c.bin, c.release, m)
		}
	}

	const point = "pre-mount:after-attach"
	start := func(bin string) (*ctr, error) {
		img := filepath.Join(testDir(t), "layer.img")
		c := newCtr(t, ctrOpts{hookPath: bin, args: []string{"--lower", tplSquash, "--image", img, "--size", "48M"}})
		cmd := exec.Command("lxc-start", "-n", c.name, "-P", c.lxcpath)
		cmd.Env = append(os.Environ(), "LXC_HOOKS_TEST_KILLPOINT="+point)
		if out, err := cmd.CombinedOutput(); err != nil {
			return c, fmt.Errorf("%v: %s", err, out)
		}
		return c, nil
	}
	c, err := start(filepath.Join(rel, "lxc-hook-loopimg"))
	if err != nil {
		t.Fatalf("the release build with LXC_HOOKS_TEST_KILLPOINT=%s: %v", point, err)
	}
	if s := c.state(); s != "RUNNING" {
		t.Fatalf("the release build's container is %s", s)
	}
	c.mustSh("echo written > /root/f && sync")
	c.stop(false)
	if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
		t.Fatalf("the release build logged errors:\n%s", strings.Join(errs, "\n"))
	}
	// Control: the test build dies at that point, so the start fails.
	ctl, err := start(filepath.Join(binDir, "lxc-hook-loopimg"))
	if err == nil {
		t.Fatalf("the test build was not killed at %s: the point's name is wrong and the check above proves nothing", point)
	}
	if s := ctl.state(); s == "RUNNING" {
		t.Fatalf("control container is %s", s)
	}
}
