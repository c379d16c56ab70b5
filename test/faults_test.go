package test

import (
	"fmt"
	"math/rand"
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

// The fault suite: a hook SIGKILLed at each point where it changes
// something (and at random moments), LXC's monitor and the container's
// init SIGKILLed, the host filesystem full behind a sparse image, a stop
// racing a start, damaged metadata. After each fault:
//   - the next normal start works, or is refused with a line naming the
//     remedy;
//   - data synced before the fault is there;
//   - a bystander container, running throughout, is untouched;
//   - after the next normal stop no loop device and no mount of the
//     container is left, and the image fscks clean.
// LXC_HOOKS_LONG=1 adds 1000 start/stop cycles with a random fault in each.
//
// Hooks are killed through the test-only LXC_HOOKS_TEST_KILLPOINT
// (pkg/killpoint), set on one lxc-start: LXC hands it to the hooks and to
// its monitor, which runs the stop hooks.

// fault is one container under fault, its files in its own directory.
type fault struct {
	t    *testing.T
	dir  string
	img  string
	c    *ctr
	data int // lines synced to /root/data so far
}

func newFault(t *testing.T, extra ...string) *fault {
	d := testDir(t)
	f := &fault{t: t, dir: d, img: filepath.Join(d, "layer.img")}
	f.c = loopimgCtr(t, d, f.img, append([]string{"--size", "48M"}, extra...)...)
	return f
}

// startWith runs lxc-start with a kill point armed.
func (f *fault) startWith(killpoint string) error {
	cmd := exec.Command("lxc-start", "-n", f.c.name, "-P", f.c.lxcpath)
	cmd.Env = append(os.Environ(), "LXC_HOOKS_TEST_KILLPOINT="+killpoint)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lxc-start: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// write appends a line to /root/data and syncs it.
func (f *fault) write() {
	f.t.Helper()
	f.data++
	f.c.mustSh("echo " + strconv.Itoa(f.data) + " >> /root/data && sync")
}

// checkData checks every synced line is there.
func (f *fault) checkData(when string) {
	f.t.Helper()
	want := ""
	for i := 1; i <= f.data; i++ {
		want += strconv.Itoa(i) + "\n"
	}
	if f.data == 0 {
		f.c.mustSh("true")
		return
	}
	if got := f.c.mustSh("cat /root/data"); got != want {
		f.t.Fatalf("%s: /root/data is %q, want %q", when, got, want)
	}
}

// mountsOf lists the mounts on this host naming the container's files or
// its runtime directory.
func (f *fault) mountsOf() []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, " - tmpfs lxc-hooks-test ") {
			continue // the small host filesystem a test mounted itself
		}
		if strings.Contains(line, f.dir) || strings.Contains(line, f.c.runDir()) {
			out = append(out, line)
		}
	}
	return out
}

// recover is the check after a fault: make sure it is stopped, start it
// normally (refusals must name their remedy; remedy is then applied by
// the caller through fix), check data, stop, and check nothing is left.
func (f *fault) recover(when string, by *bystander) {
	f.t.Helper()
	if f.c.state() != "STOPPED" {
		if out, err := f.c.lxc("lxc-stop", "-k"); err != nil && f.c.state() != "STOPPED" {
			f.t.Fatalf("%s: lxc-stop -k: %v %s", when, err, out)
		}
	}
	if err := f.c.start(); err != nil {
		f.t.Fatalf("%s: the next normal start failed: %v\n%s", when, err, strings.Join(f.c.hookLogLines("ERROR"), "\n"))
	}
	f.checkData(when)
	f.write()
	f.c.stop(f.data%2 == 0)
	f.clean(when + ", then a normal start and stop")
	by.check(when)
}

// clean checks that nothing of the container is left and the image fscks.
func (f *fault) clean(when string) {
	f.t.Helper()
	assertNoLoops(f.t, f.dir, when)
	if m := f.mountsOf(); len(m) > 0 {
		f.t.Fatalf("%s: mounts left: %v", when, m)
	}
	if exists(f.img) {
		fsckClean(f.t, f.img, when)
	}
}

// bystander is a container that runs through the whole suite; no fault
// of another container may touch it.
type bystander struct {
	t     *testing.T
	c     *ctr
	dir   string
	loops []string
	pid   int
}

func newBystander(t *testing.T) *bystander {
	d := testDir(t)
	c := loopimgCtr(t, d, filepath.Join(d, "layer.img"), "--size", "32M")
	c.mustStart()
	c.mustSh("echo bystander > /root/b && sync")
	return &bystander{t: t, c: c, dir: d, loops: loopsUnder(d), pid: c.pid()}
}

func (b *bystander) check(when string) {
	b.t.Helper()
	if s := b.c.state(); s != "RUNNING" {
		b.t.Fatalf("%s: the bystander container is %s", when, s)
	}
	if p := b.c.pid(); p != b.pid {
		b.t.Fatalf("%s: the bystander's init changed from %d to %d", when, b.pid, p)
	}
	if got, err := b.c.sh("cat /root/b"); err != nil || got != "bystander\n" {
		b.t.Fatalf("%s: the bystander's data: %q %v", when, got, err)
	}
	if l := loopsUnder(b.dir); strings.Join(l, ",") != strings.Join(b.loops, ",") {
		b.t.Fatalf("%s: the bystander's loop devices changed: %v, were %v", when, l, b.loops)
	}
}

func TestFaults(t *testing.T) {
	requireEnv(t)
	by := newBystander(t)
	defer by.c.stop(true)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("random seed %d", seed)
	var mu sync.Mutex
	count := map[string]int{}
	done := func(kind string) { mu.Lock(); count[kind]++; mu.Unlock() }
	defer func() { t.Logf("faults injected and recovered from: %v", count) }()

	// A pre-mount killed while it creates the image: no image yet.
	t.Run("pre-mount killed creating the image", func(t *testing.T) {
		f := newFault(t, "--preallocate")
		f.t = t
		if err := f.startWith("pre-mount:creating-image"); err == nil {
			t.Fatal("lxc-start succeeded with its pre-mount hook killed")
		}
		f.recover("pre-mount killed while creating the image", by)
		if m, _ := filepath.Glob(filepath.Join(f.dir, ".layer.img.*")); len(m) > 0 {
			t.Fatalf("temporary images left (space leaked): %v", m)
		}
		done("pre-mount:creating-image")
	})

	// A pre-mount killed at each point after the image exists, and at a
	// random moment.
	points := []string{"pre-mount:after-attach", "pre-mount:after-image-mount", "pre-mount:before-save",
		fmt.Sprintf("pre-mount:after=%dms", rng.Intn(40))}
	for _, p := range points {
		t.Run(p, func(t *testing.T) {
			f := newFault(t)
			f.t = t
			f.c.mustStart()
			f.write()
			f.c.stop(false)
			err := f.startWith(p)
			if err == nil && !strings.Contains(p, "after=") {
				t.Fatal("lxc-start succeeded with its pre-mount hook killed")
			}
			f.recover(p, by)
			done(p)
		})
	}

	// The stop hook killed (at a point, at a random moment), with a normal
	// stop and with lxc-stop -k.
	for _, p := range []string{"stop:before-unmount", "stop:before-verify", "stop:before-detach", "stop:before-remove",
		fmt.Sprintf("stop:after=%dms", rng.Intn(20))} {
		for _, kill := range []bool{false, true} {
			// No parentheses or blanks: the name becomes part of paths on the
			// test's hook lines.
			name := p + map[bool]string{false: "_stop", true: "_kill"}[kill]
			t.Run(name, func(t *testing.T) {
				f := newFault(t)
				f.t = t
				if err := f.startWith(p); err != nil {
					t.Fatal(err)
				}
				f.write()
				f.c.stop(kill)
				f.recover(name, by)
				done(p)
			})
		}
	}

	t.Run("container init SIGKILLed", func(t *testing.T) {
		f := newFault(t)
		f.t = t
		f.c.mustStart()
		f.write()
		mon := monitorPID(t, f.c)
		syscall.Kill(f.c.pid(), syscall.SIGKILL)
		waitGone(t, mon, "the LXC monitor after kill -9 of init")
		f.clean("after kill -9 of init")
		f.recover("init SIGKILLed", by)
		done("init")
	})

	// The monitor SIGKILLed: LXC can no longer stop the container or run
	// its stop hooks. LXC gives the container's init SIGKILL as its
	// parent-death signal, so the container ends with it and the kernel
	// frees its mounts and (autoclear) loop devices; should init outlive
	// it, the next start must be refused naming init as the holder (two
	// mounts of one ext4 would corrupt it), and ending it is the remedy.
	t.Run("LXC monitor SIGKILLed", func(t *testing.T) {
		f := newFault(t)
		f.t = t
		f.c.mustStart()
		f.write()
		initPID := f.c.pid()
		syscall.Kill(monitorPID(t, f.c), syscall.SIGKILL)
		gone := false
		for i := 0; i < 300 && !gone; i++ {
			gone = syscall.Kill(initPID, 0) != nil
			sleepBriefly()
		}
		if !gone {
			err := f.c.start()
			errs := strings.Join(f.c.hookLogLines("ERROR"), "\n")
			if err == nil || !strings.Contains(errs, "is already attached to") || !strings.Contains(errs, "pid "+strconv.Itoa(initPID)) {
				t.Fatalf("start while the orphaned init %d holds the image: %v\n%s", initPID, err, errs)
			}
			syscall.Kill(initPID, syscall.SIGKILL) // the remedy: end the holder
			waitGone(t, initPID, "the orphaned init")
		} else {
			t.Log("init ended with its monitor (parent-death signal)")
		}
		waitNoLoops(t, f.dir, "after the holder ended")
		f.recover("monitor SIGKILLed", by)
		done("monitor")
	})

	t.Run("stop racing start", func(t *testing.T) {
		f := newFault(t)
		f.t = t
		f.c.mustStart()
		f.write()
		f.c.stop(false)
		for i := 0; i < 5; i++ {
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); f.c.lxc("lxc-start") }()
			time.Sleep(time.Duration(rng.Intn(30)) * time.Millisecond)
			f.c.lxc("lxc-stop", "-k")
			wg.Wait()
			f.recover(fmt.Sprintf("stop racing start, round %d", i), by)
			done("stop racing start")
		}
	})

	// The host filesystem fills up behind a sparse image: writes inside
	// fail. After a stop the image either preens clean at the next start,
	// or the start is refused naming the e2fsck command to run.
	t.Run("host filesystem full behind a sparse image", func(t *testing.T) {
		d := testDir(t)
		small := filepath.Join(d, "small")
		os.Mkdir(small, 0o755)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40M", "lxc-hooks-test", small).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a small tmpfs: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", small).Run() })
		f := &fault{t: t, dir: d, img: filepath.Join(small, "layer.img")}
		f.c = loopimgCtr(t, d, f.img, "--size", "128M")
		f.c.mustStart()
		f.write()
		out, _ := f.c.sh("dd if=/dev/urandom of=/root/fill bs=1M count=100; sync")
		var sfs syscall.Statfs_t
		syscall.Statfs(small, &sfs)
		t.Logf("filling the 128M image on a 40M host: %q; host free now %d KiB", lastLines(out, 1), sfs.Bavail*uint64(sfs.Bsize)/1024)
		if sfs.Bavail > 1024 {
			t.Fatalf("the host filesystem did not fill up: %d blocks free", sfs.Bavail)
		}
		f.c.stop(true)
		f.clean2(small)
		// The remedy for a full host: free space. Then the image must start.
		if err := f.c.start(); err != nil {
			errs := strings.Join(f.c.hookLogLines("ERROR"), "\n")
			if !strings.Contains(errs, "e2fsck") || !strings.Contains(errs, f.img) {
				t.Fatalf("start after the host filled up: %v, and no remedy named:\n%s", err, errs)
			}
			exec.Command("e2fsck", "-fy", f.img).Run()
			if err := f.c.start(); err != nil {
				t.Fatalf("start after the named remedy: %v", err)
			}
		}
		f.c.mustSh("rm -f /root/fill && sync")
		f.checkData("after the host filled up")
		f.c.stop(false)
		f.clean("host full, then a normal start and stop")
		by.check("host full")
		done("host full")
	})

	// A group descriptor damaged under a superblock that says clean (its
	// checksum overwritten): the kernel refuses the mount ("structure
	// needs cleaning") though e2fsck -p repairs it; pre-mount must run it
	// once and retry, so the start works and the data is there.
	t.Run("damaged metadata", func(t *testing.T) {
		f := newFault(t)
		f.t = t
		f.c.mustStart()
		f.write()
		f.c.stop(false)
		damageGroupDescriptor(t, f.img)
		if err := f.c.start(); err != nil {
			t.Fatalf("start with a descriptor e2fsck -p repairs: %v\n%s", err, strings.Join(f.c.hookLogLines("ERROR"), "\n"))
		}
		f.checkData("after the repair")
		f.c.stop(false)
		f.recover("damaged metadata", by)
		done("damaged metadata")
	})

	cycles := 10
	if os.Getenv("LXC_HOOKS_LONG") != "" {
		cycles = 1000
	}
	t.Run(fmt.Sprintf("%d cycles with a random fault each", cycles), func(t *testing.T) {
		f := newFault(t)
		f.t = t
		tally := map[string]int{}
		all := []string{"", "pre-mount:after-attach", "pre-mount:after-image-mount", "pre-mount:before-save",
			"stop:before-unmount", "stop:before-verify", "stop:before-detach", "stop:before-remove", "init"}
		for i := 0; i < cycles; i++ {
			p := all[rng.Intn(len(all))]
			switch {
			case rng.Intn(4) == 0:
				p = fmt.Sprintf("%s:after=%dms", []string{"pre-mount", "stop"}[rng.Intn(2)], rng.Intn(30))
			case p == "init":
				f.c.mustStart()
				f.write()
				mon := monitorPID(t, f.c)
				syscall.Kill(f.c.pid(), syscall.SIGKILL)
				waitGone(t, mon, "the monitor")
			}
			kind := p
			if i := strings.Index(p, ":after="); i > 0 {
				kind = p[:i] + ":random"
			}
			if p != "init" {
				if f.startWith(p) == nil {
					f.write()
					f.c.stop(rng.Intn(2) == 0)
				} else {
					kind += " (start refused)"
				}
			}
			f.recover(fmt.Sprintf("cycle %d (%s)", i, p), by)
			done("cycle")
			tally[kind]++
			if (i+1)%100 == 0 {
				t.Logf("%d cycles: every one recovered; faults %v", i+1, tally)
			}
		}
		t.Logf("%d cycles, each followed by a normal start (data checked) and stop (no loop device, no mount, e2fsck -fn clean, bystander untouched): %v", cycles, tally)
	})
}

// clean2 checks the small-host case: the image lives outside f.dir.
func (f *fault) clean2(small string) {
	f.t.Helper()
	assertNoLoops(f.t, small, "after the host filled up")
	assertNoLoops(f.t, f.dir, "after the host filled up")
}

// damageGroupDescriptor overwrites the checksum of group descriptor 0,
// leaving the superblock (and its "clean" state) as it is.
func damageGroupDescriptor(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", img).Output()
	if err != nil {
		t.Fatalf("dumpe2fs: %v", err)
	}
	bs := 4096
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "Block size:"); ok {
			bs, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	// The descriptors follow the superblock's block: block 1, or block 2
	// with 1 KiB blocks (the superblock fills block 1 there).
	off := int64(bs)
	if bs == 1024 {
		off = 2048
	}
	off += 0x1e // bg_checksum
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, 2)
	fh.ReadAt(b, off)
	if _, err := fh.WriteAt([]byte{b[0] ^ 0xff, b[1] ^ 0xff}, off); err != nil {
		t.Fatal(err)
	}
	fh.Sync()
}
