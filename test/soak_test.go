package test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// soakScale is the soak's size: the default run keeps a short version;
// LXC_HOOKS_LONG=1 gives the long one (2 x 500 cycles, 64 parallel
// starts). LXC_HOOKS_SOAK_BUSY=1 runs a busy loop on every CPU beside it.
func soakScale() (cycles, parallel int) {
	if os.Getenv("LXC_HOOKS_LONG") != "" {
		return 500, 64
	}
	return 20, 12
}

// busyCPUs spins one goroutine per CPU until the test ends, when
// LXC_HOOKS_SOAK_BUSY is set: starts and stops must not fail because the
// machine is loaded (timeouts, signals landing in slow syscalls).
func busyCPUs(t *testing.T) {
	if os.Getenv("LXC_HOOKS_SOAK_BUSY") == "" {
		return
	}
	var stop atomic.Bool
	for i := 0; i < runtime.NumCPU(); i++ {
		go func() {
			x := 0
			for !stop.Load() {
				x++
			}
			_ = x
		}()
	}
	t.Logf("a busy loop on each of %d CPUs", runtime.NumCPU())
	t.Cleanup(func() { stop.Store(true) })
}

// Unprivileged start/stop cycles of two containers side by side, so that
// every start and stop of one overlaps the other's (an unprivileged root is
// attached on the host, and other mount namespaces made meanwhile get a
// copy of it), then many parallel starts: no start may fail, and after
// every lxc-stop nothing of that container may be attached, nor any hook
// error logged.
func TestUnprivilegedSoak(t *testing.T) {
	requireEnv(t)
	busyCPUs(t)
	cycles, parallel := soakScale()
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)

	t.Run(fmt.Sprintf("2x%d cycles side by side", cycles), func(t *testing.T) {
		var cs []*ctr
		var dirs []string
		for i, hook := range []string{"lxc-hook-loopimg", "lxc-hook-overlay"} {
			d := filepath.Join(dir, fmt.Sprintf("pair%d", i))
			os.Mkdir(d, 0o700)
			args := layerArgs(hook, tpl, d)
			// DEBUG: the stop hook says how long it waited for copies of
			// the container's root that the other container's start held.
			cs = append(cs, unprivCtrOpts(t, ctrOpts{hook: hook, args: args, extra: []string{"lxc.log.level = DEBUG"}}))
			dirs = append(dirs, d)
		}
		failures := make([][]string, len(cs))
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Add(1)
			go func(i int, c *ctr) {
				defer wg.Done()
				for n := 0; n < cycles && len(failures[i]) < 5; n++ {
					if err := c.start(); err != nil {
						failures[i] = append(failures[i], fmt.Sprintf("cycle %d: %v: %s", n, err, strings.Join(c.hookLogLines("ERROR"), " | ")))
						continue
					}
					c.lxc("lxc-stop", "-k")
					if l := loopsUnder(dirs[i]); len(l) > 0 {
						failures[i] = append(failures[i], fmt.Sprintf("cycle %d: attached at lxc-stop return: %v", n, l))
					}
					if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
						failures[i] = append(failures[i], fmt.Sprintf("cycle %d: %s", n, strings.Join(errs, " | ")))
						os.Truncate(c.logFile, 0)
					}
				}
			}(i, c)
		}
		wg.Wait()
		// LXC_HOOKS_SOAK_LOGS=DIR keeps the containers' logs for a reader.
		if d := os.Getenv("LXC_HOOKS_SOAK_LOGS"); d != "" {
			for _, c := range cs {
				b, _ := os.ReadFile(c.logFile)
				os.WriteFile(filepath.Join(d, c.name+".log"), b, 0o644)
			}
		}
		waits := 0
		for _, c := range cs {
			for _, l := range c.hookLogLines("DEBUG") {
				if strings.Contains(l, "went with the copies") {
					waits++
				}
			}
		}
		t.Logf("stops that waited for copies another start held: %d (logs since the last failure only)", waits)
		for i, f := range failures {
			if len(f) > 0 {
				t.Errorf("%s: %d failures, first ones:\n%s", cs[i].name, len(f), strings.Join(f, "\n"))
			}
		}
	})

	t.Run(strconv.Itoa(parallel)+" parallel starts", func(t *testing.T) {
		cs := make([]*ctr, parallel)
		for i := range cs {
			cs[i] = unprivCtr(t, "lxc-hook-loopimg", "--lower", tpl, "--image", filepath.Join(dir, fmt.Sprintf("p%d.img", i)), "--size", "32M")
		}
		errs := make([]error, parallel)
		var wg sync.WaitGroup
		t0 := time.Now()
		for i, c := range cs {
			wg.Add(1)
			go func(i int, c *ctr) {
				defer wg.Done()
				errs[i] = c.start()
			}(i, c)
		}
		wg.Wait()
		t.Logf("%d unprivileged starts at once took %s", parallel, since(t0))
		failed := 0
		for i, err := range errs {
			if err != nil {
				failed++
				t.Errorf("container %d: %v\n%s", i, err, strings.Join(cs[i].hookLogLines("ERROR"), "\n"))
			}
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
		for _, c := range cs {
			if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
				t.Errorf("%s: %s", c.name, strings.Join(errs, "\n"))
			}
		}
	})
}
