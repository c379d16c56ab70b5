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

	"github.com/lxc-hooks/lxc-hooks/pkg/state"
)

// Issue 13 item 1: a host process holds a file of a stopped container A
// through /proc/PID/root; B starts and gets A's old mount namespace number.
// status and release must name the real holder and never B, release --kill
// must kill the holder and leave B running, and A must restart cleanly.
// The reuse is forced, not hoped for: a helper fills every free namespace
// number below A's old one (the kernel hands out the lowest free number),
// so B's gets it; a B that still gets another number (a process elsewhere
// took it meanwhile) is stopped and tried again, bounded, and the test
// fails if the reuse never happens.
func TestReleaseAfterNamespaceNumberReuse(t *testing.T) {
	requireEnv(t)
	var a, b *ctr
	var holder *exec.Cmd
	var who string
	var nsA, nsB uint64
	for attempt := 1; ; attempt++ {
		a = initCtr(t, "lxc-hook-loopimg", "--size", "64M")
		a.mustStart()
		a.mustSh("echo kept > /root/k && sync")
		nsA = mountNSInode(t, a.pid())

		// exec 3</proc/$PID/root/bin/busybox in a sleeping host process.
		f, err := os.Open("/proc/" + strconv.Itoa(a.pid()) + "/root/bin/busybox")
		if err != nil {
			t.Fatal(err)
		}
		holder = exec.Command("/bin/sleep", "600")
		holder.ExtraFiles = []*os.File{f}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		h := holder
		t.Cleanup(func() { h.Process.Kill(); h.Wait() })
		who = "pid " + strconv.Itoa(holder.Process.Pid) + " (/bin/sleep 600)"

		a.stop(false)
		if errs := strings.Join(a.hookLogLines("ERROR"), "\n"); !strings.Contains(errs, who) {
			t.Fatalf("the stop hook did not name the host process holding A's files (%s):\n%s", who, errs)
		}

		b, nsB = initCtr(t, "lxc-hook-loopimg", "--size", "64M"), 0
		for try := 1; try <= 5 && nsB != nsA; try++ {
			fill, line := startHelper(t, "nsfill", strconv.FormatUint(nsA, 10))
			if !strings.HasPrefix(line, "ready") {
				// A's namespace may not be freed yet, or another process
				// took its number.
				fill.end()
				t.Logf("attempt %d.%d: namespace number %d is not free: %s", attempt, try, nsA, line)
				sleepBriefly()
				continue
			}
			b.mustStart()
			fill.end()
			t.Logf("attempt %d.%d: namespace number %d made the next: %s", attempt, try, nsA, line)
			if nsB = mountNSInode(t, b.pid()); nsB != nsA {
				t.Logf("attempt %d.%d: B got namespace number %d, not A's %d", attempt, try, nsB, nsA)
				b.stop(true)
			}
		}
		if nsB == nsA {
			t.Logf("B got A's mount namespace number %d (attempt %d)", nsA, attempt)
			break
		}
		if attempt == 3 {
			t.Fatalf("B never got A's old mount namespace number %d in %d attempts: the scenario was not produced", nsA, attempt)
		}
		holder.Process.Kill()
		holder.Wait()
	}
	bInit := b.pid()

	notB := func(what, out string) {
		t.Helper()
		if strings.Contains(out, "pid "+strconv.Itoa(bInit)+" ") || strings.Contains(out, b.name) {
			t.Fatalf("%s names B (init pid %d):\n%s", what, bInit, out)
		}
		if !strings.Contains(out, who) {
			t.Fatalf("%s does not name the holder %s:\n%s", what, who, out)
		}
	}
	// A restart while held is refused, naming the real holder, not A's own
	// new monitor or hook (whose namespace may carry the old number).
	if err := a.start(); err == nil {
		a.stop(true)
		t.Fatal("A restarted with its image still held")
	}
	var refusal string
	for _, l := range a.hookLogLines("ERROR") {
		if strings.Contains(l, " pre-mount - ") {
			refusal = l
		}
	}
	if strings.Contains(refusal, "lxc monitor") || strings.Contains(refusal, "lxc-hook-loopimg --") {
		t.Fatalf("the refused restart names A's own monitor or hook: %q", refusal)
	}
	notB("the refused restart", refusal)

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

// mountNSInode is the inode number of pid's mount namespace.
func mountNSInode(t *testing.T, pid int) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(pid)+"/ns/mnt", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// Issue 13 item 2: a hook SIGKILLed while creating the image left a
// temporary file that blocked every later start. Now the next start reuses
// the dead creator's file (its lock is free) and works; nothing is left
// beside the image and the preallocated space is not counted twice. The
// hook is killed by its kill point pre-mount:creating-image (after mke2fs,
// before the rename), which must fire: the test cannot pass without the
// fault.
func TestImageCreationKilled(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "layer.img")
	tmp := filepath.Join(dir, ".layer.img.creating")
	fired := firedDir(t, dir)
	a := loopimgCtr(t, dir, img, "--size", "2G", "--preallocate")

	err := startArmed(a, "pre-mount:creating-image", fired)
	if !markerOf(fired, "pre-mount:creating-image") {
		t.Fatalf("the kill point pre-mount:creating-image never fired (start: %v): the test did not kill the creation", err)
	}
	if err == nil {
		a.stop(true)
		t.Fatal("the start whose hook was killed succeeded")
	}
	if exists(img) {
		t.Fatal("an image appeared though its creation was killed")
	}
	if !exists(tmp) {
		t.Fatalf("no %s left by the killed creation: its reuse is not tested", tmp)
	}
	left := duBlocks(t, dir)

	a.mustStart()
	a.mustSh("echo kept > /root/k && sync")
	a.stop(false)
	if exists(tmp) {
		t.Fatalf("%s is left after a successful start", tmp)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), "creating") {
			t.Fatalf("left beside the image: %s", e.Name())
		}
	}
	used := duBlocks(t, dir)
	if used > 2<<30+64<<20 {
		t.Fatalf("the container's directory occupies %d MiB for one 2 GiB image: space leaked", used>>20)
	}
	t.Logf("the killed creation left %d MiB in its temporary file; after the next start the directory holds %d MiB", left>>20, used>>20)
	a.mustStart()
	if got := a.mustSh("cat /root/k"); got != "kept\n" {
		t.Fatalf("%q", got)
	}
	a.stop(false)
	assertNoLoops(t, dir, "after the final stop")
	fsckClean(t, img, "after the final stop")
}

// duBlocks sums the blocks allocated to the files directly in dir.
func duBlocks(t *testing.T, dir string) int64 {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var n int64
	for _, e := range ents {
		var st syscall.Stat_t
		if syscall.Lstat(filepath.Join(dir, e.Name()), &st) == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// Issue 13 item 8c: a container whose name has a space, hook version 0
// (LXC appends the name unquoted, sh splits it): starts, writes persist,
// stops with nothing left.
func TestNameWithSpaceVersion0(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "32M")
	// Rename it: a name with a space, its directory following.
	spaced := uniqueName("sp ace ")
	newDir := filepath.Join(c.lxcpath, spaced)
	if err := os.Rename(c.dir, newDir); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(newDir, "config")
	b, _ := os.ReadFile(cfg)
	conf := strings.ReplaceAll(string(b), c.dir, newDir)
	conf = strings.Replace(conf, "lxc.uts.name = "+c.name, "lxc.uts.name = spaced", 1)
	os.WriteFile(cfg, []byte(conf), 0o644)
	c.name, c.dir, c.rootfs, c.logFile = spaced, newDir, filepath.Join(newDir, "rootfs"), filepath.Join(newDir, c.name+".log")

	c.mustStart()
	c.mustSh("echo kept > /root/k && sync")
	c.stop(false)
	if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
		t.Fatalf("errors:\n%s", strings.Join(errs, "\n"))
	}
	assertNoLoops(t, dir, "after the stop")
	c.mustStart()
	if got := c.mustSh("cat /root/k"); got != "kept\n" {
		t.Fatalf("%q", got)
	}
	c.stop(false)
	assertNoLoops(t, dir, "after the final stop")
	fsckClean(t, img, "after the final stop")
}

// Issue 13 item 5: two overlay containers on one --upper. The second is
// refused, naming the first, while the first runs; once the first is gone
// (here a crash: no stop hook ran), the second starts.
func TestOverlaySharedUpperRefused(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	upper := filepath.Join(dir, "layer")
	args := []string{"--lower", tplSquash, "--upper", upper}
	a := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: args})
	b := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: args})
	a.mustStart()
	a.mustSh("echo from-a > /root/a && sync")

	refused := func(when string) {
		t.Helper()
		if err := b.start(); err == nil {
			b.stop(true)
			t.Fatalf("%s: a second container started on the same --upper", when)
		}
		line := strings.Join(b.hookLogLines("ERROR"), "\n")
		if !strings.Contains(line, "container "+a.name+" ("+filepath.Join(a.dir, "config")+")") {
			t.Fatalf("%s: the refusal does not name %s:\n%s", when, a.name, line)
		}
	}
	refused("while A runs")

	// A crash: the monitor dies without running any stop hook (LXC's
	// parent-death signal takes A's init with it); the claim stays, stale.
	mon := monitorPID(t, a)
	initPID := a.pid()
	syscall.Kill(mon, syscall.SIGKILL)
	for i := 0; i < 1000 && syscall.Kill(initPID, 0) == nil; i++ {
		sleepBriefly()
	}
	if !exists(filepath.Join(upper, "lxc-hook-in-use")) {
		t.Fatal("no claim left by the crash: the test does not test the takeover")
	}
	// A moves to a layer of its own, so that the owner record
	// (lxc-hook-owner) lets B have this one: what is left to decide is
	// the stale claim.
	cfg := filepath.Join(a.dir, "config")
	conf, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.ReplaceAll(string(conf), "--upper "+upper, "--upper "+upper+"-a")), 0o644)

	b.mustStart()
	if got := b.mustSh("cat /root/a"); got != "from-a\n" {
		t.Fatalf("B does not see A's layer: %q", got)
	}
	b.stop(false)
	if exists(filepath.Join(upper, "lxc-hook-in-use")) {
		t.Fatal("the claim is left after B's stop")
	}
	b.mustStart()
	b.stop(false)
}

// gdtOffset is where the primary group descriptors of an ext4 image start.
func gdtOffset(t *testing.T, img string) int64 {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4)
	f.ReadAt(b, 1024+24) // s_log_block_size
	bs := int64(1024) << (uint32(b[0]) | uint32(b[1])<<8)
	if bs == 1024 {
		return 2048 // block 0 is the boot block, 1 the superblock
	}
	return bs
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Issue 13 item 9: metadata damaged under a superblock that says clean.
// A bad group descriptor checksum (e2fsck -p repairs it): the start runs
// e2fsck once and works, data intact. Zeroed group descriptors (e2fsck -p
// cannot): the start is refused with the image, the kernel's words and the
// command to run, and nothing is left attached.
func TestDamagedDescriptorsUnderCleanSuperblock(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "32M")
	c.mustStart()
	c.mustSh("echo kept > /root/k && sync")
	c.stop(false)
	fsckClean(t, img, "before the damage")

	gdt := gdtOffset(t, img)
	writeAt(t, img, gdt+0x1E, []byte{0xde, 0xad}) // group 0's bg_checksum
	c.mustStart()
	if got := c.mustSh("cat /root/k"); got != "kept\n" {
		t.Fatalf("after the repair: %q", got)
	}
	if w := strings.Join(c.hookLogLines("WARN"), "\n"); !strings.Contains(w, "e2fsck") {
		t.Fatalf("the repair is not logged:\n%s", w)
	}
	c.stop(false)
	fsckClean(t, img, "after the repaired start")

	writeAt(t, img, gdt, make([]byte, 1024)) // the descriptors themselves
	if err := c.start(); err == nil {
		c.stop(true)
		t.Fatal("an image e2fsck -p cannot repair was mounted")
	}
	var refusal string
	for _, l := range c.hookLogLines("ERROR") {
		if strings.Contains(l, " pre-mount - ") {
			refusal = l
		}
	}
	for _, want := range []string{img, "e2fsck -f " + img} {
		if !strings.Contains(refusal, want) {
			t.Fatalf("the refusal lacks %q: %q", want, refusal)
		}
	}
	if !strings.Contains(strings.ToLower(refusal), "structure needs cleaning") {
		t.Fatalf("the refusal does not give the kernel's words: %q", refusal)
	}
	t.Logf("refusal: %s", refusal)
	assertNoLoops(t, dir, "after the refused start")
}

// Issue 13 item 7: an image attached by another tool (losetup -f, idle,
// not mounted, its superblock clean, no lock) is refused, naming the
// device; no second device is attached. Once it is detached, the start works.
func TestImageAttachedByLosetupRefused(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "32M")
	c.mustStart()
	c.stop(false)

	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	if err := c.start(); err == nil {
		c.stop(true)
		t.Fatal("started with the image attached by losetup")
	}
	refusal := strings.Join(c.hookLogLines("ERROR"), "\n")
	if !strings.Contains(refusal, "already attached to "+dev) {
		t.Fatalf("the refusal does not name %s:\n%s", dev, refusal)
	}
	n := 0
	for _, l := range loopsUnder(dir) {
		if strings.Contains(l, "delta.img") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d loop devices on the image, want only losetup's", n)
	}
	if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d: %v %s", err, out)
	}
	c.mustStart()
	c.stop(false)
	assertNoLoops(t, dir, "after the final stop")
}

// Issue 13 item 8b: two containers on one template with different
// --run-dir values share the template's one loop device; the first to stop
// must not report it as left over (it was an ERROR naming the other), and
// the device goes with the last.
func TestSharedTemplateAcrossRunDirs(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	runDir := filepath.Join(dir, "run")
	a := newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", tpl, "--image", filepath.Join(dir, "a.img"), "--size", "32M", "--run-dir", runDir}})
	b := newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", tpl, "--image", filepath.Join(dir, "b.img"), "--size", "32M"}})
	a.mustStart()
	b.mustStart()
	tplLoops := func() int {
		n := 0
		for _, l := range loopsUnder(dir) {
			if strings.Contains(l, "tpl.squashfs") {
				n++
			}
		}
		return n
	}
	if n := tplLoops(); n != 1 {
		t.Fatalf("%d loop devices for one template, want 1", n)
	}
	a.stop(false)
	if errs := a.hookLogLines("ERROR"); len(errs) > 0 {
		t.Fatalf("A's stop reported errors while B uses the template:\n%s", strings.Join(errs, "\n"))
	}
	if got := b.mustSh("cat /etc/from-template"); got != "template file\n" {
		t.Fatalf("B: %q", got)
	}
	b.stop(false)
	if errs := b.hookLogLines("ERROR"); len(errs) > 0 {
		t.Fatalf("B's stop:\n%s", strings.Join(errs, "\n"))
	}
	assertNoLoops(t, dir, "after both stopped")
	if m, _ := filepath.Glob(filepath.Join(runDir, "*", "state")); len(m) > 0 {
		t.Fatalf("runtime state left: %v", m)
	}
}

// A container started under the previous version, whose runtime record is
// in the old "key value" format, stops cleanly under this one: its record
// is rewritten here the way the old hooks wrote it, then lxc-stop.
func TestStopsWithOldFormatRecord(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "32M")
	c.mustStart()
	run := state.Dir{Path: c.runDir()}
	rec, err := run.Load()
	if err != nil || rec == nil {
		t.Fatalf("record: %v %v", rec, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "container %s\nconfig %s\nmount_ns %d\n", strconv.Quote(rec.Container), strconv.Quote(rec.ConfigFile), 4026531840)
	for _, l := range rec.Loops {
		fmt.Fprintf(&b, "loop role=%s device=%s number=%d diskseq=%d dev=%d ino=%d mount_ns=%d shared=%t backing=%s\n",
			strconv.Quote(l.Role), strconv.Quote(l.Device), l.Number, l.Diskseq, l.Dev, l.Ino, 4026531840, l.Shared, strconv.Quote(l.Backing))
	}
	for _, m := range rec.Mountpoints {
		fmt.Fprintf(&b, "mountpoint %s\n", strconv.Quote(m))
	}
	if err := os.WriteFile(filepath.Join(run.Path, "state"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	c.stop(false)
	if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
		t.Fatalf("stop with an old record:\n%s", strings.Join(errs, "\n"))
	}
	if exists(run.Path) {
		t.Fatalf("runtime directory %s left", run.Path)
	}
	assertNoLoops(t, dir, "after the stop")
	fsckClean(t, img, "after the stop")
}

// A tool that outlived its hook (an e2fsck left running when its hook was
// killed) keeps the image's lock for as long as it works: the next start is
// refused, naming it, instead of racing it; once it ends, the start works.
// The orphan is played by flock(1) and its child, holding the lock the way
// an inherited fd does.
func TestOrphanToolHoldingImageLockNamed(t *testing.T) {
	requireEnv(t)
	needTools(t, "apt-get install util-linux", "flock")
	dir := testDir(t)
	img := filepath.Join(dir, "delta.img")
	c := loopimgCtr(t, dir, img, "--size", "32M")
	c.mustStart()
	c.stop(false)

	orphan := exec.Command("flock", img, "sleep", "600")
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	end := func() { once.Do(func() { syscall.Kill(-orphan.Process.Pid, syscall.SIGKILL); orphan.Wait() }) }
	t.Cleanup(end)
	locked := func() bool {
		f, err := os.Open(img)
		if err != nil {
			return false
		}
		defer f.Close()
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
	}
	for i := 0; i < 1000 && !locked(); i++ {
		sleepBriefly()
	}
	if err := c.start(); err == nil {
		c.stop(true)
		t.Fatal("started while a tool holds the image's lock")
	}
	refusal := strings.Join(c.hookLogLines("ERROR"), "\n")
	if !strings.Contains(refusal, "is locked") || !strings.Contains(refusal, "sleep 600)") || strings.Contains(refusal, "lxc-hook-loopimg --") {
		t.Fatalf("the refusal does not name just the lock holder pid %d:\n%s", orphan.Process.Pid, refusal)
	}
	assertNoLoops(t, dir, "after the refused start")
	end()
	c.mustStart()
	c.stop(false)
	assertNoLoops(t, dir, "after the final stop")
}
