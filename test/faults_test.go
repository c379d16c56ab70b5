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
// its monitor, which runs the stop hooks. Every point the suite arms must
// fire: the point leaves a marker (LXC_HOOKS_TEST_KILLPOINT_FIRED) just
// before the SIGKILL, and a named point without its marker fails the
// subtest (a renamed or moved point would otherwise turn it into a plain
// start and stop). A point armed at a random moment ("after=") fires only
// if the hook is still running then: its marker must agree with the
// outcome (a start fails exactly when its pre-mount was killed).

// fault is one container under fault, its files in its own directory.
type fault struct {
	t     *testing.T
	dir   string
	img   string
	c     *ctr
	data  int    // lines synced to /root/data so far
	fired string // where armed kill points leave their markers
}

func newFault(t *testing.T, extra ...string) *fault {
	d := testDir(t)
	f := &fault{t: t, dir: d, img: filepath.Join(d, "layer.img")}
	f.c = loopimgCtr(t, d, f.img, append([]string{"--size", "48M"}, extra...)...)
	f.fired = firedDir(t, d)
	return f
}

// newUnprivFault is newFault for an unprivileged container (pre-start
// builds its root and attaches it on the host; see unpriv_test.go).
func newUnprivFault(t *testing.T) *fault {
	d := testDir(t)
	tpl := filepath.Join(d, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	f := &fault{t: t, dir: d, img: filepath.Join(d, "layer.img")}
	f.c = unprivCtr(t, "lxc-hook-loopimg", "--lower", tpl, "--image", f.img, "--size", "48M")
	f.fired = firedDir(t, d)
	return f
}

// firedDir makes the directory kill points leave their markers in.
func firedDir(t *testing.T, d string) string {
	t.Helper()
	p := filepath.Join(d, "fired")
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// startWith runs lxc-start with a kill point armed; the markers of the
// points that fire go to f.fired, emptied first.
func (f *fault) startWith(killpoint string) error {
	return startArmed(f.c, killpoint, f.fired)
}

// startArmed runs lxc-start of c with a kill point armed; the markers of
// the points that fire go to fired, emptied first.
func startArmed(c *ctr, killpoint, fired string) error {
	ents, _ := os.ReadDir(fired)
	for _, e := range ents {
		os.Remove(filepath.Join(fired, e.Name()))
	}
	cmd := exec.Command("lxc-start", "-n", c.name, "-P", c.lxcpath)
	cmd.Env = append(os.Environ(), killpointEnv+"="+killpoint, firedEnv+"="+fired)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lxc-start: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// killpointEnv and firedEnv are pkg/killpoint's Env and FiredEnv (the
// test package is built without the tag that defines them).
const (
	killpointEnv = "LXC_HOOKS_TEST_KILLPOINT"
	firedEnv     = "LXC_HOOKS_TEST_KILLPOINT_FIRED"
)

// firedPoint reports whether point left its marker since the last
// startWith.
func (f *fault) firedPoint(point string) bool {
	return markerOf(f.fired, point)
}

// markerOf reports whether point left its marker ("POINT.PID") in dir.
func markerOf(dir, point string) bool {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), point+".")
		if _, err := strconv.Atoi(rest); ok && err == nil {
			return true
		}
	}
	return false
}

// mustHaveFired fails the test if point did not fire.
func (f *fault) mustHaveFired(point string) {
	f.t.Helper()
	if !f.firedPoint(point) {
		ents, _ := os.ReadDir(f.fired)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		f.t.Fatalf("kill point %s was armed but never fired (markers: %v): the test did not inject its fault", point, names)
	}
}

// checkRandomPreMount checks a pre-mount killed at a random moment: the
// start failed exactly when the kill point fired.
func (f *fault) checkRandomPreMount(point string, startErr error) {
	f.t.Helper()
	switch fired := f.firedPoint(point); {
	case fired && startErr == nil:
		f.t.Fatalf("%s fired (the hook was killed), yet lxc-start succeeded", point)
	case !fired && startErr != nil:
		f.t.Fatalf("lxc-start failed though %s never fired (the hook finished first): %v\n%s", point, startErr, strings.Join(f.c.hookLogLines("ERROR"), "\n"))
	}
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

// mountsOf lists the mounts on this host naming the container's files,
// its runtime directory or its rootfs (where an unprivileged container's
// root is attached while it runs).
func (f *fault) mountsOf() []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, " - tmpfs lxc-hooks-test ") {
			continue // the small host filesystem a test mounted itself
		}
		fields := strings.Fields(line)
		onRootfs := len(fields) > 4 && (fields[4] == f.c.rootfs || strings.HasPrefix(fields[4], f.c.rootfs+"/"))
		if onRootfs || strings.Contains(line, f.dir) || strings.Contains(line, f.c.runDir()) {
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
		f.mustHaveFired("pre-mount:creating-image")
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
			if strings.Contains(p, "after=") {
				f.checkRandomPreMount(p, err)
				t.Logf("%s: the pre-mount hook killed: %v", p, f.firedPoint(p))
			} else {
				if err == nil {
					t.Fatal("lxc-start succeeded with its pre-mount hook killed")
				}
				f.mustHaveFired(p)
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
				// lxc-stop returns after the stop hook ended.
				if strings.Contains(p, "after=") {
					t.Logf("%s: the stop hook killed: %v", p, f.firedPoint(p))
				} else {
					f.mustHaveFired(p)
				}
				f.recover(name, by)
				done(p)
			})
		}
	}

	// An unprivileged container's pre-start killed before and after it
	// attached the root it built on the host (the next start detaches a
	// root left there, by its recorded mount id), and its stop hook killed
	// at each point.
	for _, p := range []string{"pre-start:before-attach", "pre-start:after-attach"} {
		t.Run("unprivileged_"+p, func(t *testing.T) {
			f := newUnprivFault(t)
			f.t = t
			f.c.mustStart()
			f.write()
			f.c.stop(false)
			if err := f.startWith(p); err == nil {
				t.Fatal("lxc-start succeeded with its pre-start hook killed")
			}
			f.mustHaveFired(p)
			f.recover("unprivileged, "+p, by)
			done(p)
		})
	}
	for _, p := range []string{"stop:before-unmount", "stop:before-verify", "stop:before-detach", "stop:before-remove"} {
		t.Run("unprivileged_"+p, func(t *testing.T) {
			f := newUnprivFault(t)
			f.t = t
			if err := f.startWith(p); err != nil {
				t.Fatal(err)
			}
			f.write()
			f.c.stop(false)
			f.mustHaveFired(p)
			f.recover("unprivileged, "+p, by)
			done("unprivileged " + p)
		})
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
	// frees its mounts and (autoclear) loop devices.
	t.Run("LXC monitor SIGKILLed", func(t *testing.T) {
		f := newFault(t)
		f.t = t
		f.c.mustStart()
		f.write()
		killMonitor(t, f.c)
		waitNoLoops(t, f.dir, "after the monitor and init ended")
		f.clean("after kill -9 of the monitor")
		f.recover("monitor SIGKILLed", by)
		done("monitor")
	})

	// The same with a process kept in the container's mount namespace: it
	// keeps the layer mounted there and the devices attached, so the next
	// start is refused naming it; the README's remedy, release --kill,
	// ends it and detaches the devices, and the container starts.
	t.Run("LXC monitor SIGKILLed, namespace held", func(t *testing.T) {
		f := newFault(t)
		f.t = t
		f.c.mustStart()
		f.write()
		holder, who := holdNamespace(t, f.c)
		killMonitor(t, f.c)
		if len(loopsUnder(f.dir)) == 0 {
			t.Fatal("no loop device left with the namespace held: the fault was not injected")
		}
		err := f.c.start()
		errs := strings.Join(f.c.hookLogLines("ERROR"), "\n")
		if err == nil || !strings.Contains(errs, "is already attached to") || !strings.Contains(errs, who) {
			t.Fatalf("start while %s holds the image: %v\n%s", who, err, errs)
		}
		out, err := admin(t, "lxc-hook-loopimg", "release", f.c.name, "-P", f.c.lxcpath)
		if err != nil || !strings.Contains(out, who) {
			t.Fatalf("release does not name %s: %v\n%s", who, err, out)
		}
		out, err = admin(t, "lxc-hook-loopimg", "release", f.c.name, "--kill", "-P", f.c.lxcpath)
		if err != nil || !strings.Contains(out, "killed "+who) || !strings.Contains(out, " detached") {
			t.Fatalf("release --kill: %v\n%s", err, out)
		}
		holder.Wait()
		assertNoLoops(t, f.dir, "after release --kill")
		f.clean("after release --kill")
		f.recover("monitor SIGKILLed, namespace held, release --kill", by)
		done("monitor, namespace held")
	})

	// An unprivileged container's root stays attached on the host when no
	// stop hook runs, holding its devices: the README's remedy, release,
	// detaches it (by its recorded mount id), and the devices go.
	t.Run("LXC monitor SIGKILLed, unprivileged", func(t *testing.T) {
		f := newUnprivFault(t)
		f.t = t
		f.c.mustStart()
		f.write()
		killMonitor(t, f.c)
		if !isMountpoint(t, f.c.rootfs) || len(loopsUnder(f.dir)) == 0 {
			t.Fatalf("after the monitor's kill: root mounted on the host %v, devices %v; want both left (the fault was not injected)", isMountpoint(t, f.c.rootfs), loopsUnder(f.dir))
		}
		out, err := admin(t, "lxc-hook-loopimg", "release", f.c.name, "-P", f.c.lxcpath)
		if err != nil || !strings.Contains(out, "detached the container's root from "+f.c.rootfs) {
			t.Fatalf("release: %v\n%s", err, out)
		}
		if isMountpoint(t, f.c.rootfs) {
			t.Fatal("the root is still mounted on the host after release")
		}
		waitNoLoops(t, f.dir, "after release")
		f.clean("after release")
		f.recover("monitor SIGKILLed, unprivileged, release", by)
		done("monitor, unprivileged")
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
			t.Fatalf("cannot mount a small tmpfs: %v %s", err, out)
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
				err := f.startWith(p)
				if err == nil {
					f.write()
					f.c.stop(rng.Intn(2) == 0)
				} else {
					kind += " (start refused)"
				}
				switch {
				case p == "":
					if err != nil {
						t.Fatalf("cycle %d: a start with no fault failed: %v", i, err)
					}
				case strings.HasPrefix(p, "pre-mount:after="):
					f.checkRandomPreMount(p, err)
				case strings.HasPrefix(p, "pre-mount:"):
					if err == nil {
						t.Fatalf("cycle %d: lxc-start succeeded with its pre-mount hook killed at %s", i, p)
					}
					f.mustHaveFired(p)
				case !strings.Contains(p, "after="):
					if err != nil {
						t.Fatalf("cycle %d: lxc-start with a stop kill point failed: %v", i, err)
					}
					f.mustHaveFired(p)
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

// killMonitor SIGKILLs the container's LXC monitor and waits, bounded,
// until it and the container's init (killed by its parent-death signal)
// are gone.
func killMonitor(t *testing.T, c *ctr) {
	t.Helper()
	initPID, mon := c.pid(), monitorPID(t, c)
	syscall.Kill(mon, syscall.SIGKILL)
	waitGone(t, mon, "the LXC monitor after kill -9")
	waitGone(t, initPID, "the container's init after its monitor's kill -9 (LXC sets SIGKILL as its parent-death signal)")
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
