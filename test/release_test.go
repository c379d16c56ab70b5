package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// release --kill kills only proven holders (README, "Why pre-mount ... and
// stop"): a process that merely has the container's image device mounted
// in a mount namespace of its own (a backup or inspection tool; it may be
// the host's init) is named, never killed. Here a helper mounts the
// running container's image device in its own namespace; after the stop
// the device stays attached, the stop hook, status, release and
// release --kill name the helper, release --kill leaves it alive and the
// device attached and says so (non-zero exit), the next start is refused;
// once the helper ends by itself the device goes and the container starts
// with its data.
func TestReleaseKillSparesMounters(t *testing.T) {
	requireEnv(t)
	c := initCtr(t, "lxc-hook-loopimg", "--size", "48M")
	img := filepath.Join(c.dir, "layer.img")
	c.mustStart()
	c.mustSh("echo kept > /root/k && sync")
	dev := imageDevice(t, c.dir, img)

	mdir := filepath.Join(testDir(t), "mounter")
	if err := os.Mkdir(mdir, 0o700); err != nil {
		t.Fatal(err)
	}
	m, line := startHelper(t, "mounter", "/dev/"+dev, mdir)
	if line != "ready" {
		t.Fatalf("the mounter helper: %q", line)
	}
	mpid := m.cmd.Process.Pid
	named := "mounted in the mount namespace of pid " + strconv.Itoa(mpid) + " "

	c.stop(false)
	if errs := strings.Join(c.hookLogLines("ERROR"), "\n"); !strings.Contains(errs, named) {
		t.Fatalf("the stop hook does not name the mounter (%q):\n%s", named, errs)
	}
	if h := status(t, c).Containers[0].Holders; !strings.Contains(h, named) {
		t.Fatalf("status does not name the mounter: %q", h)
	}
	out, err := admin(t, "lxc-hook-loopimg", "release", c.name, "-P", c.lxcpath)
	if err != nil || !strings.Contains(out, named) {
		t.Fatalf("release: %v\n%s", err, out)
	}
	out, err = admin(t, "lxc-hook-loopimg", "release", c.name, "--kill", "-P", c.lxcpath)
	t.Logf("release --kill with the device mounted elsewhere: %v\n%s", err, out)
	if strings.Contains(out, "killed pid "+strconv.Itoa(mpid)) {
		t.Fatal("release --kill killed a process that only has the device mounted")
	}
	if err == nil || !strings.Contains(out, "still held") || !strings.Contains(out, named) {
		t.Fatalf("release --kill must fail, naming the mounter it left alone: %v\n%s", err, out)
	}
	if syscall.Kill(mpid, 0) != nil || processState(mpid) == "Z" {
		t.Fatalf("the mounter (pid %d) is gone after release --kill", mpid)
	}
	if got := imageDevice(t, c.dir, img); got != dev {
		t.Fatalf("the image is on %s now, was %s", got, dev)
	}
	if err := c.start(); err == nil {
		c.stop(true)
		t.Fatal("started while its image is mounted elsewhere")
	}

	m.end() // the mounter's namespace, and its mount, go with it
	waitNoLoops(t, c.dir, "after the mounter ended")
	out, err = admin(t, "lxc-hook-loopimg", "release", c.name, "-P", c.lxcpath)
	if err != nil || !strings.Contains(out, "holds no loop device") {
		t.Fatalf("release once the mounter ended: %v\n%s", err, out)
	}
	c.mustStart()
	if got := c.mustSh("cat /root/k"); got != "kept\n" {
		t.Fatalf("after the mounter: %q", got)
	}
	c.stop(false)
	assertNoLoops(t, c.dir, "after the final stop")
	fsckClean(t, img, "after the final stop")
}

// processState is the state letter of pid in /proc/PID/stat ("" if gone).
func processState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}
