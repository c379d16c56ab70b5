package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A start of SRC while "copy" copies its layer is refused: the copy holds
// the image's lock until the copy is checked (loopimg), or the layer
// directory's (overlay), so the container cannot write the layer under
// the copy. The copy is held at a point after the layer was copied
// (SIGSTOP there), the start is tried, then the copy goes on and must
// succeed with SRC's data.
func TestCopyHoldsLayerLock(t *testing.T) {
	requireEnv(t)
	for hook, extra := range copyHooks {
		t.Run(hook, func(t *testing.T) { copyHoldsLayerLock(t, hook, extra) })
	}
}

func copyHoldsLayerLock(t *testing.T, hook string, extra []string) {
	c := initCtr(t, hook, extra...)
	c.mustStart()
	c.mustSh("echo before-copy > /root/data && sync")
	c.stop(false)

	cmd := exec.Command(filepath.Join(binDir, hook), "copy", c.name, c.name+"-copy", "-P", c.lxcpath)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LXC_HOOKS_TEST_KILLPOINT=copy:after-image-copy/stop"}
	if hook == "lxc-hook-overlay" {
		cmd.Env[1] = "LXC_HOOKS_TEST_KILLPOINT=copy:after-layer-copy/stop"
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	resumed := false
	defer func() {
		if !resumed {
			cmd.Process.Signal(syscall.SIGCONT)
			<-exited
		}
	}()
	stopped := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !stopped; {
		select {
		case err := <-exited:
			resumed = true
			t.Fatalf("copy ended before its stop point: %v %s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
		stopped = processStopped(cmd.Process.Pid)
	}
	if !stopped {
		t.Fatal("copy never reached its stop point")
	}
	if err := c.start(); err == nil {
		c.stop(false)
		t.Fatal("SRC started while copy was copying its layer (the layer was not locked)")
	}
	if !strings.Contains(c.log(), "locked") {
		t.Fatalf("refused start does not say the image is locked:\n%s", lastLines(c.log(), 10))
	}
	cmd.Process.Signal(syscall.SIGCONT)
	resumed = true
	if err := <-exited; err != nil {
		t.Fatalf("copy after the refused start: %v %s", err, out.String())
	}
	d := other(c, c.name+"-copy")
	d.mustStart()
	if got := d.mustSh("cat /root/data"); got != "before-copy\n" {
		t.Fatalf("copy's data: %q", got)
	}
	d.stop(false)
	c.mustStart() // the lock went with the copy
	c.stop(false)
	assertNoLoops(t, workRoot, "after the copy")
}

// A copy SIGKILLed midway leaves a directory without a config that
// lxc-ls and lxc-destroy do not know; the next copy to the same name
// removes it and copies (it used to refuse "already exists" until the
// user found and removed the directory by hand). A directory the copy
// did not make is still refused.
func TestCopyRetryAfterKill(t *testing.T) {
	requireEnv(t)
	hook := "lxc-hook-loopimg"
	c := initCtr(t, hook, "--size", "64M")
	c.mustStart()
	c.mustSh("echo before-copy > /root/data && sync")
	c.stop(false)
	dst := c.name + "-copy"
	cmd := exec.Command(filepath.Join(binDir, hook), "copy", c.name, dst, "-P", c.lxcpath)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LXC_HOOKS_TEST_KILLPOINT=copy:after-image-copy"}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("copy was not killed at its kill point: %s", out)
	}
	dstDir := filepath.Join(c.lxcpath, dst)
	if !exists(filepath.Join(dstDir, "layer.img")) || exists(filepath.Join(dstDir, "config")) {
		t.Fatal("the killed copy did not leave a partial directory (the test does not test the retry)")
	}
	out, err := admin(t, hook, "copy", c.name, dst, "-P", c.lxcpath)
	if err != nil {
		t.Fatalf("copy after a killed copy: %v %s", err, out)
	}
	if !strings.Contains(out, "partial copy") {
		t.Fatalf("the retry does not say it removed the partial copy: %s", out)
	}
	d := other(c, dst)
	d.mustStart()
	if got := d.mustSh("cat /root/data"); got != "before-copy\n" {
		t.Fatalf("copy's data: %q", got)
	}
	d.stop(false)
	if exists(filepath.Join(dstDir, ".lxc-hook-copy-in-progress")) {
		t.Fatal("a finished copy keeps its in-progress marker")
	}
	// A directory of the user's, even an empty one, is never taken.
	mine := filepath.Join(c.lxcpath, c.name+"-mine")
	os.Mkdir(mine, 0o755)
	os.WriteFile(filepath.Join(mine, "notes"), []byte("mine\n"), 0o644)
	if out, err := admin(t, hook, "copy", c.name, c.name+"-mine", "-P", c.lxcpath); err == nil || !strings.Contains(out, "already exists") || !exists(filepath.Join(mine, "notes")) {
		t.Fatalf("copy onto a directory it did not make: %v %s", err, out)
	}
	assertNoLoops(t, workRoot, "after the copies")
}

// A copy of a --preallocate container keeps the hook line's
// --preallocate, so its image is reserved on the host as the source's is
// (a sparse copy would fail the copy's writes on a full host).
func TestCopyPreallocated(t *testing.T) {
	requireEnv(t)
	hook := "lxc-hook-loopimg"
	c := initCtr(t, hook, "--size", "64M")
	// init has no --preallocate: the flag is the hook line's.
	cfgPath := filepath.Join(c.dir, "config")
	cfg, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.ReplaceAll(string(cfg), "--size 64M", "--size 64M --preallocate")), 0o640)
	c.mustStart()
	c.mustSh("echo data > /root/data && sync")
	c.stop(false)
	src := filepath.Join(c.dir, "layer.img")
	if a := allocated(t, src); a < apparentSize(t, src) {
		t.Fatalf("the source is not preallocated (%d of %d): the test tests nothing", a, apparentSize(t, src))
	}
	out, err := admin(t, hook, "copy", c.name, c.name+"-copy", "-P", c.lxcpath)
	if err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	t.Log(strings.TrimSpace(out))
	d := other(c, c.name+"-copy")
	dst := filepath.Join(d.dir, "layer.img")
	if cfg, _ := os.ReadFile(filepath.Join(d.dir, "config")); !strings.Contains(string(cfg), "--preallocate") {
		t.Fatalf("the copy's hook lines lost --preallocate:\n%s", cfg)
	}
	if a, s := allocated(t, dst), apparentSize(t, dst); a < s {
		t.Fatalf("the copy of a --preallocate image is sparse: %d of %d bytes allocated", a, s)
	}
	fsckClean(t, dst, "the preallocated copy")
	d.mustStart()
	if got := d.mustSh("cat /root/data"); got != "data\n" {
		t.Fatalf("copy's data: %q", got)
	}
	d.stop(false)
}
