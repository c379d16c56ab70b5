package test

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func countBacking(dir, suffix string) int {
	n := 0
	for _, l := range loopsUnder(dir) {
		if strings.HasSuffix(l, suffix+")") {
			n++
		}
	}
	return n
}

// parallelDo runs f on every container at once and returns the errors.
func parallelDo(cs []*ctr, f func(*ctr) error) []error {
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func(i int, c *ctr) {
			defer wg.Done()
			errs[i] = f(c)
		}(i, c)
	}
	wg.Wait()
	return errs
}

// 32 containers from one template, each with its own image, started at
// once: all run, exactly one loop device backs the template, one per image,
// and none is left after they all stop. Then rounds in which half stop
// while the other half start: no start fails, and the template keeps one
// device throughout.
func TestDensityOneLoopDevicePerTemplate(t *testing.T) {
	requireEnv(t)
	const n = 32
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	cs := make([]*ctr, n)
	for i := range cs {
		cs[i] = newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", tpl, "--image", filepath.Join(dir, fmt.Sprintf("c%d.img", i)), "--size", "16M"}})
	}
	start := func(c *ctr) error { return c.start() }
	stop := func(c *ctr) error {
		if out, err := c.lxc("lxc-stop", "-k"); err != nil {
			return fmt.Errorf("lxc-stop %s: %v %s", c.name, err, out)
		}
		return nil
	}
	check := func(errs []error, what string) {
		t.Helper()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s, container %d: %v\n%s", what, i, err, strings.Join(cs[i].hookLogLines("ERROR"), "\n"))
			}
		}
	}

	check(parallelDo(cs, start), "parallel start")
	for _, c := range cs {
		if s := c.state(); s != "RUNNING" {
			t.Fatalf("%s is %s", c.name, s)
		}
	}
	if got := countBacking(dir, "tpl.squashfs"); got != 1 {
		t.Fatalf("%d loop devices back the template with %d containers running, want 1", got, n)
	}
	if got := countBacking(dir, ".img"); got != n {
		t.Fatalf("%d loop devices back the images, want %d", got, n)
	}
	check(parallelDo(cs, stop), "parallel stop")
	assertNoLoops(t, dir, "after all stopped")

	// Interleaved: the first half runs; each round it stops while the
	// second half starts, then the reverse.
	a, b := cs[:n/2], cs[n/2:]
	check(parallelDo(a, start), "start of the first half")
	const rounds = 4
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		var stopErrs, startErrs []error
		wg.Add(2)
		go func() { defer wg.Done(); stopErrs = parallelDo(a, stop) }()
		go func() { defer wg.Done(); startErrs = parallelDo(b, start) }()
		wg.Wait()
		check(stopErrs, fmt.Sprintf("round %d stop", r))
		check(startErrs, fmt.Sprintf("round %d start", r))
		if got := countBacking(dir, "tpl.squashfs"); got != 1 {
			t.Fatalf("round %d: %d loop devices back the template, want 1", r, got)
		}
		if got := countBacking(dir, ".img"); got != n/2 {
			t.Fatalf("round %d: %d image loop devices, want %d", r, got, n/2)
		}
		a, b = b, a
	}
	check(parallelDo(a, stop), "final stop")
	assertNoLoops(t, dir, "after the interleaved rounds")
	for _, c := range cs {
		if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
			t.Fatalf("%s logged errors: %v", c.name, errs)
		}
	}
	t.Logf("%d parallel starts on 1 template loop device + %d image devices; %d interleaved rounds of %d stopping while %d start, no failure; 0 devices left", n, n, rounds, n/2, n/2)
}
