package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lxc-hooks/lxc-hooks/internal/debroot"
)

// The "formats" step (-only formats): which template format boots fast.
// A Debian bookworm root (debootstrap minbase + systemd-sysv, built once and
// cached) is converted with the hooks' own `template` command into each
// format, then booted under lxc-hook-loopimg until systemd has settled,
// one container at a time in interleaved rounds, and K at once.
var (
	fmtList    = flag.String("formats", "squashfs-gzip,squashfs-lz4,squashfs-zstd,erofs,erofs-lz4,dir", "template formats of the formats step")
	fmtSource  = flag.String("formats-source", "debootstrap", "root of the formats step: debootstrap (Debian bookworm minbase + systemd-sysv, cached), busybox (the benchmark's own template, a smoke test), or a directory or tarball")
	fmtCache   = flag.String("formats-cache", "/var/cache/lxc-hooks-bench", "where the debootstrap root is kept between runs (outside -work, which every run empties)")
	fmtMirror  = flag.String("mirror", "", "Debian mirror for debootstrap (default: the first URIs of /etc/apt/sources.list.d/debian.sources, or sources.list)")
	fmtDensity = flag.Int("formats-density", 256, "K containers started at once per format in the formats step (0 skips)")
	fmtDensOf  = flag.String("formats-density-of", "", "formats of the density run (comma-separated; default: every format of -formats)")
	fmtTimeout = flag.Duration("settle-timeout", 120*time.Second, "how long one container may take to settle")
)

type formatRow struct {
	format  string
	bytes   int64 // template file size (0 for dir)
	build   time.Duration
	boots   []time.Duration
	states  map[string]int // settled state -> count (running, degraded)
	density *formatDensity
}

type formatDensity struct {
	k, started, settled int
	start, settle, stop time.Duration
	loopsRunning        int
	loopsLeft           int
	memUsed             int64
	cache               int64
}

type formatsResult struct {
	source  string
	systemd bool
	rows    []*formatRow
}

// formatsRun is the whole formats step.
func (b *bench) formatsRun() *formatsResult {
	root, label := b.formatsRoot()
	res := &formatsResult{source: label, systemd: isSystemdRoot(root)}
	dir := filepath.Join(*workDir, "formats")
	must(os.MkdirAll(dir, 0o755))
	loopimg := filepath.Join(b.bin, "lxc-hook-loopimg")
	tpls := map[string]string{}
	for _, f := range strings.Split(*fmtList, ",") {
		f = strings.TrimSpace(f)
		out := filepath.Join(dir, "tpl."+f)
		t0 := time.Now()
		if _, err := run(loopimg, "template", out, "--from", root, "--format", f); err != nil {
			fatalf("template %s: %v", f, err)
		}
		row := &formatRow{format: f, build: time.Since(t0), states: map[string]int{}}
		if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() {
			row.bytes = fi.Size()
		}
		tpls[f] = out
		res.rows = append(res.rows, row)
	}

	// One container per format, booted in turn.
	cs := map[string]*ctr{}
	for _, row := range res.rows {
		cs[row.format] = b.initCtr("fmt-"+strings.ReplaceAll(row.format, "-", ""), tpls[row.format], "1G")
		// Warm-up: creates the layer image, fills the host's cache of the
		// template file as a machine that has booted it before would have.
		if _, _, err := cs[row.format].boot(res.systemd); err != nil {
			fatalf("%s: %v", row.format, err)
		}
		_, err := cs[row.format].stop(true)
		must(err)
	}
	for i := 0; i < *rounds; i++ {
		for j := range res.rows {
			row := res.rows[(i+j)%len(res.rows)]
			d, state, err := cs[row.format].boot(res.systemd)
			if err != nil {
				fatalf("round %d, %s: %v", i, row.format, err)
			}
			row.boots = append(row.boots, d)
			row.states[state]++
			_, err = cs[row.format].stop(true)
			must(err)
			if n := countLoops(*workDir); n != 0 {
				fatalf("round %d, %s: %d loop devices still attached after lxc-stop", i, row.format, n)
			}
		}
	}
	if *fmtDensity > 0 {
		for _, row := range res.rows {
			if *fmtDensOf != "" && !strings.Contains(","+*fmtDensOf+",", ","+row.format+",") {
				continue
			}
			step(fmt.Sprintf("formats: density, K = %d, %s", *fmtDensity, row.format))
			row.density = b.formatDensityRun(row.format, tpls[row.format], *fmtDensity, res.systemd)
		}
	}
	return res
}

// formatsRoot returns the directory or tarball to build templates from.
func (b *bench) formatsRoot() (string, string) {
	switch *fmtSource {
	case "busybox":
		return b.tplDir, "the benchmark's busybox template (smoke test: no systemd)"
	case "debootstrap":
		return debootstrapRoot(), "Debian bookworm, debootstrap --variant=minbase --include=systemd-sysv"
	}
	return *fmtSource, *fmtSource
}

// debootstrapRoot builds the Debian root once into the cache and returns
// it.
func debootstrapRoot() string {
	mirror := *fmtMirror
	if mirror == "" {
		mirror = debroot.Mirror()
	}
	if _, err := os.Stat(filepath.Join(*fmtCache, debroot.Name)); err != nil {
		step("debootstrap bookworm from " + mirror + " (once; cached in " + *fmtCache + ")")
	}
	root, _, err := debroot.Build(*fmtCache, mirror, 15*time.Minute, os.Stdout)
	if err != nil {
		fatalf("%v (or give -mirror URL)", err)
	}
	return root
}

func isSystemdRoot(root string) bool {
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return true // a tarball: assume a distribution's root
	}
	l, err := os.Readlink(filepath.Join(root, "sbin", "init"))
	return err == nil && strings.Contains(l, "systemd")
}

// initCtr writes a container with the hooks' own `init`, as a user would,
// with no network (the bench needs none) and no AppArmor profile.
func (b *bench) initCtr(name, tpl, size string) *ctr {
	defaults := filepath.Join(*workDir, "formats-default.conf")
	must(os.WriteFile(defaults, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"), 0o644))
	if _, err := run(filepath.Join(b.bin, "lxc-hook-loopimg"), "init", name, "--template", tpl, "--size", size, "-P", b.lxcpath, "--default-config", defaults); err != nil {
		fatalf("init %s: %v", name, err)
	}
	c := &ctr{b: b, name: name, variant: "loopimg", dir: filepath.Join(b.lxcpath, name)}
	f, err := os.OpenFile(filepath.Join(c.dir, "config"), os.O_APPEND|os.O_WRONLY, 0)
	must(err)
	fmt.Fprintf(f, "lxc.log.file = %s\nlxc.log.level = WARN\n", filepath.Join(c.dir, name+".log"))
	f.Close()
	return c
}

// boot starts c and waits until it has settled: for systemd, until
// `systemctl is-system-running --wait` answers running or degraded (a
// minbase root in a container may have a unit that fails: "degraded" is
// still a finished boot); otherwise until lxc-attach can run a command.
// It returns the time from lxc-start to settled and the state.
func (c *ctr) boot(systemd bool) (time.Duration, string, error) {
	t0 := time.Now()
	if err := c.lxc("lxc-start"); err != nil {
		return 0, "", err
	}
	deadline := t0.Add(*fmtTimeout)
	args := []string{"-n", c.name, "-P", c.b.lxcpath, "--clear-env", "--"}
	if systemd {
		args = append(args, "systemctl", "is-system-running", "--wait")
	} else {
		args = append(args, "/bin/true")
	}
	last := ""
	for time.Now().Before(deadline) {
		out, err := exec.Command("lxc-attach", args...).Output()
		state := strings.TrimSpace(string(out))
		if !systemd && err == nil {
			return time.Since(t0), "up", nil
		}
		if state == "running" || state == "degraded" {
			return time.Since(t0), state, nil
		}
		// Before systemd listens, systemctl fails; "starting" cannot be
		// returned by --wait. Either way: ask again, shortly.
		last = state
		time.Sleep(5 * time.Millisecond)
	}
	return 0, "", fmt.Errorf("%s did not settle within %s (last state %q)", c.name, *fmtTimeout, last)
}

// formatDensityRun starts k containers of one template at once (their
// images made by one earlier boot each), waits until all settled, records
// loop devices and memory, then stops all at once.
func (b *bench) formatDensityRun(format, tpl string, k int, systemd bool) *formatDensity {
	cs := make([]*ctr, k)
	for i := range cs {
		cs[i] = b.initCtr(fmt.Sprintf("fd%s-%d", strings.ReplaceAll(format, "-", ""), i), tpl, "256M")
	}
	// First starts make the images; bounded by the cores.
	sem := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func(c *ctr) {
			defer func() { <-sem; wg.Done() }()
			if err := c.lxc("lxc-start"); err != nil {
				fatalf("first start of %s: %v", c.name, err)
			}
			if _, err := c.stop(true); err != nil {
				fatalf("stop of %s: %v", c.name, err)
			}
		}(c)
	}
	wg.Wait()
	d := &formatDensity{k: k}
	mem0, cache0 := memUsed(), meminfo("Cached")
	t0 := time.Now()
	d.start, d.started = all(cs, func(c *ctr) error { return c.lxc("lxc-start") })
	var mu sync.Mutex
	_, d.settled = all(cs, func(c *ctr) error {
		_, _, err := c.waitSettled(systemd, t0)
		mu.Lock()
		if e := time.Since(t0); e > d.settle {
			d.settle = e
		}
		mu.Unlock()
		return err
	})
	d.loopsRunning = countLoops(*workDir)
	d.memUsed, d.cache = memUsed()-mem0, meminfo("Cached")-cache0
	d.stop, _ = all(cs, func(c *ctr) error { _, err := c.stop(true); return err })
	d.loopsLeft = countLoops(*workDir)
	for _, c := range cs {
		// Free the disk for the next format: the images are this run's own.
		os.Remove(filepath.Join(c.dir, "layer.img"))
	}
	return d
}

// waitSettled is boot's wait without the start.
func (c *ctr) waitSettled(systemd bool, t0 time.Time) (time.Duration, string, error) {
	deadline := time.Now().Add(*fmtTimeout * 4) // K boots share the CPUs
	args := []string{"-n", c.name, "-P", c.b.lxcpath, "--clear-env", "--"}
	if systemd {
		args = append(args, "systemctl", "is-system-running", "--wait")
	} else {
		args = append(args, "/bin/true")
	}
	for time.Now().Before(deadline) {
		out, err := exec.Command("lxc-attach", args...).Output()
		state := strings.TrimSpace(string(out))
		if (!systemd && err == nil) || state == "running" || state == "degraded" {
			return time.Since(t0), state, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, "", fmt.Errorf("%s did not settle", c.name)
}

func (res *formatsResult) markdown() string {
	var b strings.Builder
	w := func(f string, a ...interface{}) { fmt.Fprintf(&b, f, a...) }
	w("## Templates by format: boot to settled\n\n")
	src := ""
	if *fmtSource != "debootstrap" {
		src = " -formats-source " + *fmtSource
	}
	if f := flag.Lookup("formats"); f != nil && f.Value.String() != f.DefValue {
		src += " -formats " + *fmtList
	}
	if *fmtDensOf != "" {
		src += " -formats-density-of " + *fmtDensOf
	}
	w("Measured %s on %s with `./scripts/bench.sh -only formats -rounds %d -formats-density %d%s`. ",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(), *rounds, *fmtDensity, src)
	w("Root: %s, converted by `lxc-hook-loopimg template FILE --from ROOT --format F`; each container written by `lxc-hook-loopimg init` and started under lxc-hook-loopimg. ", res.source)
	if res.systemd {
		w("Boot = from `lxc-start` to `systemctl is-system-running --wait` answering running or degraded (the states reached are counted), ")
	} else {
		w("Boot = from `lxc-start` to the first `lxc-attach` that runs (no systemd in this root), ")
	}
	w("one container at a time, the formats interleaved in rotating order, %d rounds after one warm-up boot each; the template's loop device goes with each stop (checked), so each boot mounts a cold superblock, as a lone container's restart does. `dir` is the extracted directory (the reference).\n\n", *rounds)
	var ref time.Duration
	for _, r := range res.rows {
		if r.format == "dir" {
			ref = median(r.boots)
		}
	}
	w("| format | template size | build | boot, median | min – max | vs dir (target ≤ 1.15) | settled as |\n|---|---|---|---|---|---|---|\n")
	for _, r := range res.rows {
		size := "–"
		if r.bytes > 0 {
			size = fmt.Sprintf("%.0f MiB", float64(r.bytes)/(1<<20))
		}
		s := append([]time.Duration(nil), r.boots...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		ratio := "–"
		if ref > 0 {
			ratio = fmt.Sprintf("%.2f", median(r.boots).Seconds()/ref.Seconds())
		}
		var states []string
		for st, n := range r.states {
			states = append(states, fmt.Sprintf("%s %d", st, n))
		}
		sort.Strings(states)
		w("| %s | %s | %.1f s | %s | %s – %s | %s | %s |\n", r.format, size, r.build.Seconds(), ms(median(r.boots)), ms(s[0]), ms(s[len(s)-1]), ratio, strings.Join(states, ", "))
	}
	if *fmtDensity > 0 {
		w("\n### K = %d containers of one template at once, by format\n\n", *fmtDensity)
		w("Start all = every `lxc-start` returned; settled = the last container settled (from the start of all). Loop devices counted by backing file under the bench directory: 1 shared template device + K layer images for an image format, K for `dir`. Memory added: MemTotal − MemAvailable when all settled, minus the same just before the starts; page cache added: Cached, likewise (the template's pages, once per superblock, and the layers').\n\n")
		w("| format | started | start all | all settled | settled | stop all | loop devices while running | left after stop | memory added | page cache added |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range res.rows {
			d := r.density
			if d == nil {
				continue
			}
			w("| %s | %d of %d | %s | %s | %d | %s | %d | %d | %.2f GiB | %.2f GiB |\n", r.format, d.started, d.k, d.start.Round(10*time.Millisecond), d.settle.Round(10*time.Millisecond), d.settled, d.stop.Round(10*time.Millisecond), d.loopsRunning, d.loopsLeft, float64(d.memUsed)/(1<<30), float64(d.cache)/(1<<30))
		}
	}
	return b.String()
}

// Section markers: the formats step rewrites only its own section of the
// report, and a full run keeps it.
const (
	formatsBegin = "<!-- formats: begin (bench -only formats) -->"
	formatsEnd   = "<!-- formats: end -->"
)

// withFormatsSection puts section (or, if "", the section found in old)
// into doc, replacing an earlier one.
func withFormatsSection(doc, old, section string) string {
	return withSection(doc, old, section, formatsBegin, formatsEnd)
}

// withSection puts section (or, if "", the section found in old) between
// the markers begin and end into doc, replacing an earlier one: a step
// run alone rewrites its own section, and a full run keeps the others'.
func withSection(doc, old, section, begin, end string) string {
	cut := func(s string) (string, string, bool) {
		i := strings.Index(s, begin)
		j := strings.Index(s, end)
		if i < 0 || j < i {
			return s, "", false
		}
		return s[:i] + s[j+len(end):], s[i : j+len(end)], true
	}
	doc, _, _ = cut(doc)
	block := ""
	if section != "" {
		block = begin + "\n" + section + end
	} else if _, prev, ok := cut(old); ok {
		block = prev
	}
	if block == "" {
		return doc
	}
	return strings.TrimRight(doc, "\n") + "\n\n" + block + "\n"
}
