package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Issue 13 item 1: a host process holds a file of a stopped container A
// through /proc/PID/root; B starts and gets A's old mount namespace number.
// status and release must name the real holder and never B, release --kill
// must kill the holder and leave B running, and A must restart cleanly.
func TestReleaseAfterNamespaceNumberReuse(t *testing.T) {
	requireEnv(t)
	a := initCtr(t, "lxc-hook-loopimg", "--size", "64M")
	a.mustStart()
	a.mustSh("echo kept > /root/k && sync")
	nsA, _ := os.Readlink("/proc/" + strconv.Itoa(a.pid()) + "/ns/mnt")

	// exec 3</proc/$PID/root/bin/busybox in a sleeping host process.
	f, err := os.Open("/proc/" + strconv.Itoa(a.pid()) + "/root/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("/bin/sleep", "600")
	holder.ExtraFiles = []*os.File{f}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	who := "pid " + strconv.Itoa(holder.Process.Pid) + " (/bin/sleep 600)"

	a.stop(false)
	if errs := strings.Join(a.hookLogLines("ERROR"), "\n"); !strings.Contains(errs, who) {
		t.Fatalf("post-stop did not name the host process holding A's files (%s):\n%s", who, errs)
	}

	b := initCtr(t, "lxc-hook-loopimg", "--size", "64M")
	b.mustStart()
	bInit := b.pid()
	nsB, _ := os.Readlink("/proc/" + strconv.Itoa(bInit) + "/ns/mnt")
	t.Logf("A's namespace was %s, B's is %s (reused: %v)", nsA, nsB, nsA == nsB)

	notB := func(what, out string) {
		t.Helper()
		if strings.Contains(out, "pid "+strconv.Itoa(bInit)+" ") || strings.Contains(out, b.name) {
			t.Fatalf("%s names B (init pid %d):\n%s", what, bInit, out)
		}
		if !strings.Contains(out, who) {
			t.Fatalf("%s does not name the holder %s:\n%s", what, who, out)
		}
	}
	notB("status", status(t, a).Containers[0].Holders)
	out, err := admin(t, "lxc-hook-loopimg", "release", a.name, "-P", a.lxcpath)
	if err != nil {
		t.Fatalf("release: %v %s", err, out)
	}
	notB("release", out)
	out, err = admin(t, "lxc-hook-loopimg", "release", a.name, "--kill", "-P", a.lxcpath)
	if err != nil || !strings.Contains(out, "killed "+who) {
		t.Fatalf("release --kill: %v %s", err, out)
	}
	if strings.Contains(out, "pid "+strconv.Itoa(bInit)+" ") {
		t.Fatalf("release --kill touched B:\n%s", out)
	}
	holder.Wait()
	if s := b.state(); s != "RUNNING" || syscall.Kill(bInit, 0) != nil {
		t.Fatalf("B is %s after release --kill of A", s)
	}
	if got := b.mustSh("echo alive"); got != "alive\n" {
		t.Fatalf("B: %q", got)
	}

	a.mustStart()
	if got := a.mustSh("cat /root/k"); got != "kept\n" {
		t.Fatalf("A lost its data: %q", got)
	}
	a.stop(false)
	b.stop(false)
	assertNoLoops(t, workRoot, "after both stopped")
	fsckClean(t, filepath.Join(a.dir, "layer.img"), "A after the final stop")
}
