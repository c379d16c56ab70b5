package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// loopimgCtr makes a container with lxc-hook-loopimg over the test's own
// copy of the template.
func loopimgCtr(t *testing.T, dir, img string, extra ...string) *ctr {
	t.Helper()
	tpl := filepath.Join(dir, "tpl.squashfs")
	if !exists(tpl) {
		copyFile(t, tplSquash, tpl)
	}
	args := []string{"--lower", tpl}
	if img != "" {
		args = append(args, "--image", img)
	}
	args = append(args, extra...)
	return newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: args})
}

func fsckClean(t *testing.T, img, when string) {
	t.Helper()
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: e2fsck -fn %s: %v\n%s", when, img, err, out)
	}
}

func apparentSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// allocated is what a file occupies on the host's disk.
func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// The cap: 200M into a 64M layer fails inside with ENOSPC, the image file
// stays 64M, and the container writes again after deleting the file.
func TestLoopimgCap(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "64M")
	c.mustStart()

	df := c.mustSh("df -k / | tail -1")
	f := strings.Fields(df)
	if len(f) < 2 {
		t.Fatalf("df: %q", df)
	}
	kb, _ := strconv.Atoi(f[1])
	if kb < 48*1024 || kb > 64*1024 {
		t.Fatalf("df / inside shows %d KiB, want about 64M", kb)
	}

	out, err := c.sh("dd if=/dev/zero of=/big bs=1M count=200 2>&1; sync")
	if !strings.Contains(out, "No space left on device") {
		t.Fatalf("writing 200M into 64M did not hit ENOSPC: %v %q", err, out)
	}
	if n := apparentSize(t, img); n != 64<<20 {
		t.Fatalf("image grew to %d bytes", n)
	}
	if _, err := c.sh("echo more > /after-full"); err == nil {
		// Tiny writes may still fit in the last blocks; the real check is
		// that deleting frees the space.
		t.Log("a small write still fitted after ENOSPC")
	}
	full := allocated(t, img)
	c.mustSh("rm /big && sync")
	// ext4 sends the discards for freed blocks after its journal commit,
	// asynchronously: a bounded wait for the holes, not a sleep.
	freed := allocated(t, img)
	for i := 0; i < 500 && freed > full-32<<20; i++ {
		sleepBriefly()
		freed = allocated(t, img)
	}
	if freed > full-32<<20 {
		t.Fatalf("deleting 50M inside left the image at %d bytes on the host (was %d): no discard", freed, full)
	}
	t.Logf("deleting 50M inside gave the host back %d MiB", (full-freed)>>20)
	c.mustSh("dd if=/dev/zero of=/again bs=1M count=8 && sync")
	c.stop(false)
	assertNoLoops(t, dir, "after lxc-stop")
	fsckClean(t, img, "after stop")
	if n := apparentSize(t, img); n != 64<<20 {
		t.Fatalf("image is %d bytes after stop", n)
	}
	fi, _ := os.Stat(img)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("image mode %v, want 0600", fi.Mode().Perm())
	}
}

// monitorPID finds the LXC monitor of a running container; it exits after
// the stop hook.
func monitorPID(t *testing.T, c *ctr) int {
	t.Helper()
	pid := monitorOf(c.lxcpath, c.name)
	if pid == 0 {
		t.Fatalf("no LXC monitor of %s in %s", c.name, c.lxcpath)
	}
	return pid
}

// monitorOf is the PID of the LXC monitor of container name under lxcpath,
// 0 when there is none.
func monitorOf(lxcpath, name string) int {
	want := "[lxc monitor] " + lxcpath + " " + name
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.TrimRight(string(b), "\x00") == want {
			return pid
		}
	}
	return 0
}

// waitGone waits, bounded, for a process that is ending on its own.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
		sleepBriefly()
	}
	t.Fatalf("%s (pid %d) did not end within 30s", what, pid)
}

// Persistence over restart, and kill -9 of the container's init after a
// synced write: the data stays, nothing leaks, the image fscks clean.
func TestLoopimgPersistsAndSurvivesKill9(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "64M")
	c.mustStart()
	c.mustSh("echo one > /root/a && sync")
	c.stop(false)
	fsckClean(t, img, "after a clean stop")

	c.mustStart()
	if got := c.mustSh("cat /root/a"); got != "one\n" {
		t.Fatalf("after restart: %q", got)
	}
	c.mustSh("echo two > /root/b && sync")
	mon := monitorPID(t, c)
	if err := syscall.Kill(c.pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, mon, "the LXC monitor after kill -9 of init")
	assertNoLoops(t, dir, "after kill -9 of init")
	fsckClean(t, img, "after kill -9 of init")

	c.mustStart()
	if got := c.mustSh("cat /root/a /root/b"); got != "one\ntwo\n" {
		t.Fatalf("after kill -9 and restart: %q", got)
	}
	c.stop(true)
	assertNoLoops(t, dir, "after lxc-stop -k")
	fsckClean(t, img, "after lxc-stop -k")
}

// 100 start/stop cycles: no loop device of the test left at any lxc-stop
// return, and the image fscks clean after every stop.
func TestLoopimgCycles(t *testing.T) {
	requireEnv(t)
	const cycles = 100
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "32M")
	var startTotal, stopTotal time.Duration
	for i := 0; i < cycles; i++ {
		t0 := time.Now()
		c.mustStart()
		startTotal += time.Since(t0)
		if n := len(loopsUnder(dir)); n != 2 {
			t.Fatalf("cycle %d: %d loop devices while running, want 2 (template, image): %v", i, n, loopsUnder(dir))
		}
		c.mustSh("echo " + strconv.Itoa(i) + " >> /root/cycles")
		t0 = time.Now()
		c.stop(i%2 == 1)
		stopTotal += time.Since(t0)
		assertNoLoops(t, dir, fmt.Sprintf("cycle %d after lxc-stop", i))
		fsckClean(t, img, fmt.Sprintf("cycle %d", i))
	}
	c.mustStart()
	if got := strings.Count(c.mustSh("cat /root/cycles"), "\n"); got != cycles {
		t.Fatalf("%d of %d writes persisted", got, cycles)
	}
	c.stop(true)
	t.Logf("%d start/stop cycles: 0 loop devices left after each stop, e2fsck -fn clean each time; mean lxc-start %v, mean lxc-stop %v",
		cycles, (startTotal / cycles).Round(time.Millisecond), (stopTotal / cycles).Round(time.Millisecond))
}

// A bind mount of the namespace file does not keep the image attached.
func TestLoopimgNamespacePinnedByBindMount(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "32M")
	c.mustStart()
	c.mustSh("echo pinned > /root/p && sync")
	pinNamespace(t, c, dir)
	c.stop(false)
	assertNoLoops(t, dir, "lxc-stop returned with the namespace pinned by a bind mount")
	fsckClean(t, img, "with the old namespace still pinned")
	c.mustStart()
	if got := c.mustSh("cat /root/p"); got != "pinned\n" {
		t.Fatalf("%q", got)
	}
	c.stop(true)
}

// A process kept inside the namespace holds the image: the stop hook names it,
// a restart is refused instead of attaching the image a second time, and
// once the process ends nothing is left and the image fscks clean.
func TestLoopimgNamespaceHeldByProcess(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "32M")
	c.mustStart()
	c.mustSh("echo kept > /root/k && sync")
	holder, who := holdNamespace(t, c)
	c.stop(false)

	if errs := strings.Join(c.hookLogLines("ERROR"), "\n"); !strings.Contains(errs, who) {
		t.Fatalf("the stop hook did not name %s:\n%s", who, errs)
	}
	imageLoops := func() int {
		n := 0
		for _, l := range loopsUnder(dir) {
			if strings.Contains(l, "delta.img") {
				n++
			}
		}
		return n
	}
	if n := imageLoops(); n != 1 {
		t.Fatalf("%d loop devices on the image while held, want 1", n)
	}
	if err := c.start(); err == nil {
		c.stop(true)
		t.Fatal("restart with the image still attached was not refused")
	}
	if n := imageLoops(); n != 1 {
		t.Fatalf("the refused restart attached the image again: %d devices", n)
	}
	refusal := ""
	for _, l := range c.hookLogLines("ERROR") {
		if strings.Contains(l, " pre-mount - ") {
			refusal = l
		}
	}
	if !strings.Contains(refusal, "already attached") || !strings.Contains(refusal, who) {
		t.Fatalf("the refused start does not name the device and holder: %q", refusal)
	}

	holder.Process.Kill()
	holder.Wait()
	assertNoLoops(t, dir, "after the holder ended")
	fsckClean(t, img, "after the holder ended")
	c.mustStart()
	if got := c.mustSh("cat /root/k"); got != "kept\n" {
		t.Fatalf("%q", got)
	}
	c.stop(true)
	assertNoLoops(t, dir, "after the final stop")
}

// 16 containers with their own images, started in parallel.
func TestLoopimgParallelStarts(t *testing.T) {
	requireEnv(t)
	const n = 16
	dir := testDir(t)
	cs := make([]*ctr, n)
	for i := range cs {
		cs[i] = loopimgCtr(t, dir, filepath.Join(dir, fmt.Sprintf("img%d.img", i)), "--size", "32M")
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func(i int, c *ctr) {
			defer wg.Done()
			errs[i] = c.start()
		}(i, c)
	}
	wg.Wait()
	started := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("container %d: %v\n%s", i, err, strings.Join(cs[i].hookLogLines("ERROR"), "\n"))
		} else {
			started++
		}
	}
	devices := map[string]bool{}
	for _, l := range loopsUnder(dir) {
		if strings.Contains(l, ".img)") {
			devices[strings.Fields(l)[0]] = true
		}
	}
	if len(devices) != n {
		t.Errorf("%d distinct loop devices for %d images", len(devices), n)
	}
	for _, c := range cs {
		wg.Add(1)
		go func(c *ctr) {
			defer wg.Done()
			c.lxc("lxc-stop", "-k")
		}(c)
	}
	wg.Wait()
	assertNoLoops(t, dir, "after all stopped")
	t.Logf("%d of %d parallel starts succeeded on %d distinct loop devices; 0 left after stop", started, n, len(devices))
}

// Two containers configured with one image: the second is refused, the
// first's data stays intact.
func TestLoopimgOneImageTwoContainers(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "shared.img")
	a := loopimgCtr(t, dir, img, "--size", "32M")
	b := loopimgCtr(t, dir, img, "--size", "32M")
	a.mustStart()
	a.mustSh("echo mine > /root/a && sync")
	if err := b.start(); err == nil {
		b.stop(true)
		t.Fatal("a second container mounted the same image")
	}
	errs := b.hookLogLines("ERROR")
	if len(errs) == 0 || !strings.Contains(errs[0], "already attached") || !strings.Contains(errs[0], "container "+a.name) {
		t.Fatalf("refusal does not name the device and container %s: %v", a.name, errs)
	}
	if got := a.mustSh("cat /root/a"); got != "mine\n" {
		t.Fatalf("first container's data: %q", got)
	}
	a.stop(false)
	fsckClean(t, img, "after the first container stopped")
	assertNoLoops(t, dir, "after stop")
}

// Growing --size grows the image and the filesystem; a smaller --size
// never shrinks it.
func TestLoopimgGrowNeverShrink(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "32M")
	c.mustStart()
	c.mustSh("echo before > /root/g && sync")
	c.stop(false)

	// The same container with a larger --size (another container may not
	// take this one's image: the layer records its owner).
	withSize := func(size string) {
		c.writeConfig(ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", filepath.Join(dir, "tpl.squashfs"), "--image", img, "--size", size}})
	}
	withSize("96M")
	grown := c
	grown.mustStart()
	kb, _ := strconv.Atoi(strings.Fields(grown.mustSh("df -k / | tail -1"))[1])
	if kb < 80*1024 {
		t.Fatalf("df after growing to 96M: %d KiB", kb)
	}
	if got := grown.mustSh("cat /root/g"); got != "before\n" {
		t.Fatalf("data after growing: %q", got)
	}
	grown.stop(false)
	if n := apparentSize(t, img); n != 96<<20 {
		t.Fatalf("image is %d bytes, want 96M", n)
	}
	fsckClean(t, img, "after growing")

	withSize("32M")
	c.mustStart()
	c.stop(false)
	if n := apparentSize(t, img); n != 96<<20 {
		t.Fatalf("image shrank to %d bytes", n)
	}
	if warns := strings.Join(c.hookLogLines("WARN"), "\n"); !strings.Contains(warns, "never shrunk") {
		t.Logf("no shrink warning at this log level (INFO shows WARN): %q", warns)
		t.Fatal("no warning that the image is not shrunk")
	}
}

// An image whose superblock says it was not unmounted cleanly is checked
// with e2fsck -p before it is mounted.
func TestLoopimgPreenCheck(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "32M")
	c.mustStart()
	c.stop(false)
	if out, err := exec.Command("debugfs", "-w", "-R", "ssv state 0", img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v %s", err, out)
	}
	c.mustStart()
	c.stop(false)
	if !strings.Contains(c.log(), "e2fsck -p repaired it (it was not unmounted cleanly)") {
		t.Fatalf("no preen check logged:\n%s", lastLines(c.log(), 20))
	}
	fsckClean(t, img, "after the preen check")
}

// Bad input is refused with one clear line in the LXC log; nothing the user
// had is changed.
func TestLoopimgBadInputRefused(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	junk := filepath.Join(dir, "junk.img")
	b := make([]byte, 4<<20)
	for i := range b {
		b[i] = byte(i*7919 + i/13)
	}
	os.WriteFile(junk, b, 0o600)
	junkSHA := fileSHA(t, junk)
	fresh := filepath.Join(dir, "fresh.img")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"garbage size", []string{"--image", fresh, "--size", "lots"}, `--size "lots" is not a size`},
		{"zero size", []string{"--image", fresh, "--size", "0"}, `--size "0" is zero`},
		{"negative size", []string{"--image", fresh, "--size", "-5G"}, `--size "-5G" is negative`},
		{"overflow size", []string{"--image", fresh, "--size", "99999999999999999999G"}, "is too large"},
		{"tiny size", []string{"--image", fresh, "--size", "1M"}, "is too small"},
		{"random bytes image", []string{"--image", junk, "--size", "64M"}, `image "` + junk + `" is not an ext4 filesystem`},
		{"missing directory", []string{"--image", filepath.Join(dir, "nodir", "x.img"), "--size", "64M"}, `directory "` + filepath.Join(dir, "nodir") + `" does not exist`},
		{"no size to create", []string{"--image", fresh}, "no --size was given"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := loopimgCtr(t, dir, "", tc.args...)
			if err := c.start(); err == nil {
				c.stop(true)
				t.Fatal("container started")
			}
			errs := c.hookLogLines("ERROR")
			if len(errs) == 0 || !strings.Contains(errs[0], tc.want) {
				t.Fatalf("want an ERROR line containing %q, got %q", tc.want, errs)
			}
			assertNoLoops(t, dir, "after a refused start")
		})
	}
	if fileSHA(t, junk) != junkSHA {
		t.Fatal("the refused image file was changed")
	}
	if exists(fresh) {
		t.Fatal("an image was created by a refused start")
	}
}
