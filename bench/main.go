// Command bench measures what the hooks cost on every container start and
// stop, side by side with what a user would otherwise run, and writes
// docs/benchmarks.md and a chart. Run it as root with ./scripts/bench.sh.
//
// Every comparison is one interleaved run (the variants take turns within
// each round, in a rotating order), and figures are medians.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
)

var (
	rounds       = flag.Int("rounds", 25, "rounds of each interleaved start/stop comparison")
	ioRounds     = flag.Int("io-rounds", 3, "interleaved rounds of the page cache and throughput step (medians reported)")
	parallel     = flag.Int("parallel", 64, "containers started at once in the parallel run")
	density      = flag.String("density", "64,256,1024", "K values of the density run (comma-separated; empty skips it)")
	workDir      = flag.String("work", "/var/tmp/lxc-hooks-bench", "scratch directory (on a disk, not tmpfs)")
	outDoc       = flag.String("out", "docs/benchmarks.md", "report to write")
	outChart     = flag.String("chart", "docs/benchmarks-startstop.png", "chart to write (needs gnuplot)")
	repo         = flag.String("repo", ".", "the repository (for binaries and the reference hook)")
	onlyVariants = flag.String("variants", "", "with -only startstop: run only these variants (comma-separated), for profiling; the report then lists only them")
	only         = flag.String("only", "", "run only this step (startstop, rss, io, parallel, density, formats, livecopy), for profiling; the report then has only its figures, except formats and livecopy, which rewrite only their own sections")
)

type bench struct {
	lxcpath  string
	bin      string
	tpl      string // squashfs template (mksquashfs's default, gzip)
	tplErofs string // the same as the project's default format, erofs
	tplDir   string // the same, extracted
	tplExt4  string // the same as an ext4 image (LXC's loop backend)
	report   *report
}

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fatalf("run as root (loop devices, mounts, LXC)")
	}
	r := &report{started: time.Now()}
	b := &bench{report: r}
	must(os.RemoveAll(*workDir)) // our own scratch tree, nothing mounted below it
	b.lxcpath = filepath.Join(*workDir, "lxc")
	b.bin = filepath.Join(*workDir, "bin")
	b.tplDir = filepath.Join(*workDir, "template")
	b.tpl = filepath.Join(*workDir, "template.squashfs")
	must(os.MkdirAll(b.lxcpath, 0o755))
	if *only != "livecopy" { // no unprivileged container there
		setupIDs()
		defer releaseIDs()
	}
	step("building the hooks and the template")
	b.build()
	r.machine = machine()

	if *only == "livecopy" {
		step("copies of running containers")
		section := b.livecopyRun().markdown()
		old, _ := os.ReadFile(*outDoc)
		must(os.WriteFile(*outDoc, []byte(withSection(string(old), "", section, livecopyBegin, livecopyEnd)), 0o644))
		fmt.Println(section)
		return
	}

	if *only == "formats" {
		step("template formats")
		section := b.formatsRun().markdown()
		old, _ := os.ReadFile(*outDoc)
		must(os.WriteFile(*outDoc, []byte(withFormatsSection(string(old), "", section)), 0o644))
		fmt.Println(section)
		return
	}

	step("binary sizes")
	for _, n := range []string{"lxc-hook-overlay", "lxc-hook-loopimg", "lxc-hook-aufs"} {
		fi, err := os.Stat(filepath.Join(b.bin, n))
		must(err)
		r.sizes = append(r.sizes, sizeRow{n, fi.Size()})
	}

	step("loop attach")
	r.attach = b.attachTime(200)

	step("starting a program")
	r.execs = b.execCost()
	r.pageFault = pageFaultCost(2000)

	if want("startstop") {
		step(fmt.Sprintf("start/stop, %d interleaved rounds", *rounds))
		b.startStop()
	}

	if want("rss") {
		step("peak RSS of each hook run")
		b.rss()
	}

	if want("io") {
		step("page cache and throughput inside")
		b.io()
	}

	if want("parallel") {
		step(fmt.Sprintf("%d parallel starts", *parallel))
		r.parallel = b.parallelRun(*parallel, []string{"floor", "loopimg"})
	}

	if *density != "" && want("density") {
		for _, s := range strings.Split(*density, ",") {
			k, err := strconv.Atoi(strings.TrimSpace(s))
			must(err)
			step(fmt.Sprintf("density, K = %d", k))
			r.density = append(r.density, b.densityRun(k))
		}
	}

	step("writing " + *outDoc)
	r.finished = time.Now()
	must(os.MkdirAll(filepath.Dir(*outDoc), 0o755))
	old, _ := os.ReadFile(*outDoc)
	doc := withFormatsSection(r.markdown(), string(old), "")
	must(os.WriteFile(*outDoc, []byte(withSection(doc, string(old), "", livecopyBegin, livecopyEnd)), 0o644))
	if err := r.chart(*outChart); err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
	}
	fmt.Println(r.summary())
}

func step(s string) { fmt.Printf("== %s\n", s) }

func want(s string) bool { return *only == "" || *only == s }

func must(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(f string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...)
	releaseIDs()
	os.Exit(1)
}

func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (b *bench) build() {
	cmd := exec.Command(filepath.Join(*repo, "scripts", "build.sh"), b.bin)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	must(cmd.Run())
	// The floor's hook: built as scripts/build.sh builds the hooks.
	cmd = exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(b.bin, "noop-hook"), "./bench/noop")
	cmd.Dir = *repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	must(cmd.Run())
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var"} {
		must(os.MkdirAll(filepath.Join(b.tplDir, d), 0o755))
	}
	bb, err := os.ReadFile("/bin/busybox")
	must(err)
	must(os.WriteFile(filepath.Join(b.tplDir, "bin", "busybox"), bb, 0o755))
	for _, c := range []string{"sh", "ls", "cat", "echo", "sleep", "df", "dd", "sync", "rm", "mount", "true"} {
		os.Symlink("busybox", filepath.Join(b.tplDir, "bin", c))
	}
	must(os.WriteFile(filepath.Join(b.tplDir, "sbin", "init"), []byte("#!/bin/sh\ntrap 'sync; exit 0' USR2 PWR TERM\nwhile :; do sleep 3600 & wait $!; done\n"), 0o755))
	_, err = run("mksquashfs", b.tplDir, b.tpl, "-noappend", "-quiet", "-no-progress")
	must(err)
	// The project's default template format (template's own default).
	b.tplErofs = filepath.Join(*workDir, "template.erofs")
	_, err = run(filepath.Join(b.bin, "lxc-hook-loopimg"), "template", b.tplErofs, "--from", b.tplDir)
	must(err)
	// LXC's own loop backend boots from an ext4 image of the template.
	b.tplExt4 = filepath.Join(*workDir, "template.ext4")
	_, err = run("mke2fs", "-q", "-F", "-t", "ext4", "-d", b.tplDir, b.tplExt4, "64M")
	must(err)
}

// ---- containers ----

type ctr struct {
	b       *bench
	name    string
	variant string
	dir     string
}

// newCtr writes a container of a variant:
//   - floor: LXC's own dir rootfs on the extracted template, no hook;
//   - noop: the floor with a static Go binary that does nothing on the keys
//     the hooks use (pre-mount and stop): what any Go hook costs before it
//     does any work, the floor each hook is measured against;
//   - true-hooks: the floor with /bin/true on those keys (LXC's own cost of
//     running hooks at all);
//   - shell: the reference shell hook on pre-mount (squashfs template);
//   - overlay, loopimg: the hooks, on the keys init writes, over the
//     template in the project's default format (erofs); with "-dirtpl"
//     over the extracted template directory (as the floor boots), with
//     "-squashfs" over mksquashfs's default (gzip) image;
//   - lxc-overlay, lxc-loop: LXC's own overlay backend (directory template,
//     directory upper) and loop backend (an ext4 image of the template), no
//     hook: what the hooks replace.
//
// A "-unpriv" suffix makes the variant an unprivileged container
// (lxc.idmap): floor-unpriv is LXC's own idmapped dir rootfs
// (lxc.rootfs.options = idmap=container), noop-unpriv that with the no-op
// on pre-start and stop, and the hooks are on pre-start and stop.
//
// debug puts --log-level debug on the hooks' lines: each then logs where
// its time went (the "done" line), at the cost of writing the lines.
func (b *bench) newCtr(name, variant string, extraHookArgs ...string) *ctr {
	return b.newCtrLog(name, variant, false, extraHookArgs...)
}

func (b *bench) newCtrLog(name, variant string, debug bool, extraHookArgs ...string) *ctr {
	c := &ctr{b: b, name: name, variant: variant, dir: filepath.Join(b.lxcpath, name)}
	must(os.MkdirAll(filepath.Join(c.dir, "rootfs"), 0o755))
	rootfs := "dir:" + filepath.Join(c.dir, "rootfs")
	hook := ""
	unpriv := strings.Contains(variant, "-unpriv")
	base := strings.Replace(variant, "-unpriv", "", 1)
	lower := b.tplErofs
	switch {
	case strings.HasSuffix(base, "-dirtpl"):
		base, lower = strings.TrimSuffix(base, "-dirtpl"), b.tplDir
	case strings.HasSuffix(base, "-squashfs"):
		base, lower = strings.TrimSuffix(base, "-squashfs"), b.tpl
	}
	level := ""
	if debug {
		level = " --log-level debug"
	}
	switch base {
	case "floor":
		rootfs = "dir:" + b.tplDir
	case "noop":
		rootfs = "dir:" + b.tplDir
		hook = filepath.Join(b.bin, "noop-hook")
	case "true-hooks":
		rootfs = "dir:" + b.tplDir
		hook = "/bin/true"
	case "lxc-overlay":
		upper := filepath.Join(c.dir, "delta")
		must(os.MkdirAll(upper, 0o755))
		rootfs = "overlay:" + b.tplDir + ":" + upper
	case "lxc-loop":
		img := filepath.Join(c.dir, "rootfs.img")
		if _, err := os.Stat(img); err != nil {
			_, err := run("cp", "--sparse=always", b.tplExt4, img)
			must(err)
		}
		rootfs = "loop:" + img
	case "shell":
		img := filepath.Join(c.dir, "layer.img")
		if _, err := os.Stat(img); err != nil {
			_, err := run("truncate", "-s", "256M", img)
			must(err)
			_, err = run("mke2fs", "-q", "-F", "-t", "ext4", "-m", "0", img)
			must(err)
		}
		hook = fmt.Sprintf("%s %s %s", filepath.Join(*repo, "bench", "ref-hook.sh"), b.tpl, img)
	case "overlay":
		hook = fmt.Sprintf("%s%s --lower %s --upper %s", filepath.Join(b.bin, "lxc-hook-overlay"), level, lower, filepath.Join(c.dir, "layer"))
	case "loopimg", "loopimg-dio", "loopimg-buffered":
		hook = fmt.Sprintf("%s%s --lower %s --image %s --size 768M", filepath.Join(b.bin, "lxc-hook-loopimg"), level, lower, filepath.Join(c.dir, "layer.img"))
		if base == "loopimg-buffered" {
			hook += " --direct-io=false"
		}
	default:
		fatalf("unknown variant %s", variant)
	}
	if strings.Contains(hook, "lxc-hook-") {
		for _, a := range extraHookArgs {
			hook += " " + a
		}
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "lxc.uts.name = %s\nlxc.rootfs.path = %s\n", name, rootfs)
	cfg.WriteString("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\nlxc.init.cmd = /sbin/init\nlxc.signal.halt = SIGUSR2\n")
	cfg.WriteString("lxc.mount.auto = proc:mixed sys:ro\nlxc.autodev = 1\n")
	fmt.Fprintf(&cfg, "lxc.log.file = %s\nlxc.log.level = WARN\n", filepath.Join(c.dir, name+".log"))
	// The keys init writes: one hook process per start and one per stop.
	hookTypes := []string{"pre-mount", "stop"}
	if unpriv {
		fmt.Fprintf(&cfg, "lxc.idmap = u 0 %d 65536\nlxc.idmap = g 0 %d 65536\n", unprivBase, unprivBase)
		if base == "floor" || base == "noop" {
			cfg.WriteString("lxc.rootfs.options = idmap=container\n")
		}
		hookTypes = []string{"pre-start", "stop"}
		// As init makes it: only the container's root may pass.
		must(os.Chown(c.dir, 0, int(unprivBase)))
		must(os.Chmod(c.dir, 0o710))
	}
	if hook != "" {
		for _, t := range hookTypes {
			if variant == "shell" && t != "pre-mount" {
				continue
			}
			fmt.Fprintf(&cfg, "lxc.hook.%s = %s\n", t, hook)
		}
	}
	must(os.WriteFile(filepath.Join(c.dir, "config"), []byte(cfg.String()), 0o644))
	return c
}

func (c *ctr) lxc(tool string, args ...string) error {
	_, err := run(tool, append([]string{"-n", c.name, "-P", c.b.lxcpath}, args...)...)
	return err
}

func (c *ctr) start() (time.Duration, error) {
	t0 := time.Now()
	err := c.lxc("lxc-start")
	return time.Since(t0), err
}

func (c *ctr) stop(kill bool) (time.Duration, error) {
	args := []string{}
	if kill {
		args = append(args, "-k")
	}
	t0 := time.Now()
	err := c.lxc("lxc-stop", args...)
	return time.Since(t0), err
}

func (c *ctr) sh(script string) (string, error) {
	return run("lxc-attach", "-n", c.name, "-P", c.b.lxcpath, "--clear-env", "--", "/bin/sh", "-c", script)
}

// hookTimes reads the "TYPE done took=..." lines the hooks log at debug.
var doneRe = regexp.MustCompile(` - (pre-start|pre-mount|stop) done cpu=(\S+) faults=(\d+) phases=(\S+) took=(\S+)`)

// hookRun is one hook run as its "done" line tells it: wall time from its
// main to its exit (took), CPU time of the whole process (cpu: its start
// and the Go runtime's threads too), and the wall time of each phase.
type hookRun struct {
	took, cpu time.Duration
	faults    int64 // minor page faults of the whole process
	phases    map[string]time.Duration
	order     []string
}

func (c *ctr) hookRuns() map[string][]hookRun {
	out := map[string][]hookRun{}
	f, err := os.Open(filepath.Join(c.dir, c.name+".log"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := doneRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		r := hookRun{phases: map[string]time.Duration{}}
		r.cpu, _ = time.ParseDuration(m[2])
		r.faults, _ = strconv.ParseInt(m[3], 10, 64)
		r.took, _ = time.ParseDuration(m[5])
		for _, kv := range strings.Split(m[4], ",") {
			k, v, _ := strings.Cut(kv, ":")
			ms, _ := strconv.ParseFloat(v, 64)
			r.phases[k] = time.Duration(ms * float64(time.Millisecond))
			r.order = append(r.order, k)
		}
		out[m[1]] = append(out[m[1]], r)
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// ---- measurements ----

// execRuns is how many times execCost starts each program.
const execRuns = 200

// execCost times starting programs that do nothing, interleaved: /bin/true,
// the no-op Go binary, and each hook binary answering --version.
func (b *bench) execCost() []execRow {
	cmds := [][]string{{"/bin/true"}, {filepath.Join(b.bin, "noop-hook")}}
	names := []string{"`/bin/true`", "the no-op Go binary"}
	for _, h := range []string{"lxc-hook-overlay", "lxc-hook-loopimg"} {
		cmds = append(cmds, []string{filepath.Join(b.bin, h), "--version"})
		names = append(names, "`"+h+" --version`")
	}
	ds := make([][]time.Duration, len(cmds))
	faults := make([][]time.Duration, len(cmds)) // counts, sorted as durations by median
	for i := 0; i < execRuns; i++ {
		for j, c := range cmds {
			cmd := exec.Command(c[0], c[1:]...)
			t0 := time.Now()
			must(cmd.Run())
			ds[j] = append(ds[j], time.Since(t0))
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				faults[j] = append(faults[j], time.Duration(ru.Minflt))
			}
		}
	}
	var out []execRow
	for j := range cmds {
		out = append(out, execRow{names[j], median(ds[j]), int64(median(faults[j]))})
	}
	return out
}

// pageFaultCost is what touching a fresh page of anonymous memory costs
// here (median of n pages, each its own mapping's first touch): on a
// paravirtualized guest a page fault goes through the hypervisor, and a
// short-lived process pays it for every page it touches.
func pageFaultCost(n int) time.Duration {
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		mem, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		must(err)
		t0 := time.Now()
		mem[0] = 1
		ds = append(ds, time.Since(t0))
		syscall.Munmap(mem)
	}
	return median(ds)
}

func (b *bench) attachTime(n int) time.Duration {
	f, err := os.Create(filepath.Join(*workDir, "attach.img"))
	must(err)
	defer f.Close()
	must(f.Truncate(16 << 20))
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		d, err := loop.Attach(f, loop.Options{ReadOnly: true, Autoclear: true})
		ds = append(ds, time.Since(t0))
		must(err)
		d.Close()
	}
	return median(ds)
}

var variants = []string{"floor", "noop", "true-hooks", "shell", "overlay", "loopimg", "overlay-dirtpl", "loopimg-dirtpl", "loopimg-squashfs",
	"lxc-overlay", "lxc-loop", "floor-unpriv", "noop-unpriv", "overlay-unpriv", "loopimg-unpriv", "overlay-unpriv-dirtpl"}

// hookVariants get a debug pass after the timed rounds, for where their
// time goes.
var hookVariants = []string{"overlay", "loopimg", "overlay-dirtpl", "loopimg-dirtpl", "overlay-unpriv", "loopimg-unpriv"}

func (b *bench) startStop() {
	r := b.report
	if *onlyVariants != "" {
		variants = strings.Split(*onlyVariants, ",")
		var hv []string
		for _, v := range hookVariants {
			if slices.Contains(variants, v) {
				hv = append(hv, v)
			}
		}
		hookVariants = hv
	}
	cs := map[string]*ctr{}
	for _, v := range variants {
		cs[v] = b.newCtr("ss-"+v, v)
		// Warm-up: creates images and layers, fills caches.
		if _, err := cs[v].start(); err != nil {
			fatalf("%s: %v", v, err)
		}
		_, err := cs[v].stop(true)
		must(err)
		os.Truncate(filepath.Join(cs[v].dir, "ss-"+v+".log"), 0)
	}
	starts, stops := map[string][]time.Duration{}, map[string][]time.Duration{}
	for i := 0; i < *rounds; i++ {
		for j := range variants {
			v := variants[(i+j)%len(variants)]
			d, err := cs[v].start()
			if err != nil {
				fatalf("round %d, %s: %v", i, v, err)
			}
			starts[v] = append(starts[v], d)
			// -k: a halt signal sent before the template's init has set
			// its trap is ignored, and lxc-stop then waits 60 s.
			d, err = cs[v].stop(true)
			must(err)
			stops[v] = append(stops[v], d)
		}
	}
	for _, v := range variants {
		r.startStop = append(r.startStop, startStopRow{variant: v, start: median(starts[v]), stop: median(stops[v])})
	}
	// The timed rounds log nothing on a good run, as a user's containers.
	// Where the time goes comes from a pass of its own with the hooks at
	// debug level (their "done" lines), which costs the writing of lines.
	for _, v := range hookVariants {
		c := b.newCtrLog("ph-"+v, v, true)
		for i := 0; i < *rounds+1; i++ {
			if _, err := c.start(); err != nil {
				fatalf("%s (debug): %v", v, err)
			}
			_, err := c.stop(true)
			must(err)
			if i == 0 {
				os.Truncate(filepath.Join(c.dir, c.name+".log"), 0) // the warm-up
			}
		}
		r.phases = append(r.phases, phaseRow{variant: v, runs: c.hookRuns()})
	}
}

// rss runs loopimg starts with each hook under GNU time and keeps the
// largest maximum resident set size per hook type.
func (b *bench) rss() {
	c := b.newCtr("rss", "loopimg")
	cfg := filepath.Join(c.dir, "config")
	raw, err := os.ReadFile(cfg)
	must(err)
	out := filepath.Join(c.dir, "rss.txt")
	timed := strings.ReplaceAll(string(raw), filepath.Join(b.bin, "lxc-hook-loopimg"),
		"/usr/bin/time -a -o "+out+" -f %M "+filepath.Join(b.bin, "lxc-hook-loopimg"))
	must(os.WriteFile(cfg, []byte(timed), 0o644))
	for i := 0; i < 5; i++ {
		_, err := c.start()
		must(err)
		_, err = c.stop(true)
		must(err)
	}
	data, err := os.ReadFile(out)
	must(err)
	for _, l := range strings.Fields(string(data)) {
		if kb, err := strconv.Atoi(l); err == nil && int64(kb) > b.report.rssKB {
			b.report.rssKB = int64(kb)
		}
	}
}

func meminfo(key string) int64 {
	f, err := os.Open("/proc/meminfo")
	must(err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == key+":" {
			n, _ := strconv.ParseInt(fs[1], 10, 64)
			return n * 1024
		}
	}
	return 0
}

func dropCaches() {
	exec.Command("sync").Run()
	must(os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200))
}

// io measures, inside each variant, the page cache a sequential write
// leaves per MiB written, and sequential write and read throughput: the
// variants' containers run side by side and are measured in interleaved
// rounds (the order rotating), medians reported, so that a slow moment of
// this shared machine does not land on one variant only.
func (b *bench) io() {
	const mib = 512
	variants := []string{"overlay", "loopimg-buffered", "loopimg-dio"}
	cs := make([]*ctr, len(variants))
	for i, v := range variants {
		cs[i] = b.newCtr("io-"+v, v)
		_, err := cs[i].start()
		must(err)
	}
	type sample struct{ cache, write, read []float64 }
	samples := make([]sample, len(variants))
	for round := 0; round < *ioRounds; round++ {
		for k := range variants {
			i := (k + round) % len(variants)
			c, v := cs[i], variants[i]
			c.sh("rm -f /f; sync")
			dropCaches()
			cache0 := meminfo("Cached") + meminfo("Buffers")
			t0 := time.Now()
			if out, err := c.sh(fmt.Sprintf("dd if=/dev/zero of=/f bs=1M count=%d conv=fsync 2>&1", mib)); err != nil {
				fatalf("%s: write: %v %s", v, err, out)
			}
			wt := time.Since(t0)
			cache := meminfo("Cached") + meminfo("Buffers") - cache0
			dropCaches()
			t0 = time.Now()
			if out, err := c.sh("dd if=/f of=/dev/null bs=1M 2>&1"); err != nil {
				fatalf("%s: read: %v %s", v, err, out)
			}
			rt := time.Since(t0)
			c.sh("rm -f /f; sync")
			s := &samples[i]
			s.cache = append(s.cache, float64(cache)/float64(mib<<20))
			s.write = append(s.write, float64(mib)/wt.Seconds())
			s.read = append(s.read, float64(mib)/rt.Seconds())
		}
	}
	for i, v := range variants {
		_, err := cs[i].stop(true)
		must(err)
		s := samples[i]
		b.report.io = append(b.report.io, ioRow{variant: v,
			cachePerMiB: medianFloat(s.cache), writeMBps: medianFloat(s.write), readMBps: medianFloat(s.read)})
	}
}

func medianFloat(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// parallelRun starts n containers of each variant at once (their images
// already made by one sequential start), then stops them all at once.
func (b *bench) parallelRun(n int, vs []string) []parallelRow {
	var rows []parallelRow
	for _, v := range vs {
		cs := make([]*ctr, n)
		for i := range cs {
			// Small images: a thousand of them must fit on the scratch disk.
			cs[i] = b.newCtr(fmt.Sprintf("p%s%d-%d", v[:1], n, i), v, "--size", "32M")
		}
		b.prepareImages(cs)
		row := parallelRow{variant: v, n: n}
		row.start, row.ok = all(cs, func(c *ctr) error { _, err := c.start(); return err })
		row.loopsRunning = countLoops(*workDir)
		row.memUsed = memUsed()
		row.stop, _ = all(cs, func(c *ctr) error { _, err := c.stop(true); return err })
		row.loopsLeft = countLoops(*workDir)
		rows = append(rows, row)
	}
	return rows
}

func (b *bench) prepareImages(cs []*ctr) {
	if cs[0].variant == "floor" || cs[0].variant == "true-hooks" || cs[0].variant == "noop" {
		return
	}
	// In parallel, bounded by the cores: mke2fs is the cost of a first start.
	sem := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func(c *ctr) {
			defer func() { <-sem; wg.Done() }()
			if _, err := c.start(); err != nil {
				fatalf("first start of %s: %v", c.name, err)
			}
			if _, err := c.stop(true); err != nil {
				fatalf("stop of %s: %v", c.name, err)
			}
		}(c)
	}
	wg.Wait()
}

// all runs f on every container at once and returns the wall time and how
// many succeeded.
func all(cs []*ctr, f func(*ctr) error) (time.Duration, int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	t0 := time.Now()
	for _, c := range cs {
		wg.Add(1)
		go func(c *ctr) {
			defer wg.Done()
			if err := f(c); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else {
				fmt.Fprintln(os.Stderr, err)
			}
		}(c)
	}
	wg.Wait()
	return time.Since(t0), ok
}

// countLoops counts the loop devices whose backing file is a file below
// under, matched by the device and inode numbers the kernel reports for the
// device (LOOP_GET_STATUS64), not by the path sysfs shows: that path is
// built from the mount the file was opened through and changes when that
// mount is detached (as test/harness_test.go's loopsUnder does).
func countLoops(under string) int {
	const overlayfsMagic = 0x794c7630
	type devIno struct{ dev, ino uint64 }
	files := map[devIno]bool{}
	filepath.Walk(under, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		var sfs syscall.Statfs_t
		if fi.IsDir() && p != under && syscall.Statfs(p, &sfs) == nil && sfs.Type == overlayfsMagic {
			return filepath.SkipDir // a running container's root: no backing file there, many files
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() {
			files[devIno{st.Dev, st.Ino}] = true
		}
		return nil
	})
	bound, _ := filepath.Glob("/sys/block/loop*/loop") // present while bound
	n := 0
	for _, d := range bound {
		num, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(filepath.Dir(d)), "loop"))
		if err != nil {
			continue
		}
		if st, err := loop.StatusOf(num); err == nil && files[devIno{st.BackingDev, st.BackingIno}] {
			n++
		}
	}
	return n
}

func memUsed() int64 { return meminfo("MemTotal") - meminfo("MemAvailable") }

func machine() string {
	var parts []string
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, "Linux "+strings.TrimSpace(string(b)))
	}
	parts = append(parts, fmt.Sprintf("%d CPUs", runtime.NumCPU()))
	parts = append(parts, fmt.Sprintf("%.0f GiB RAM", float64(meminfo("MemTotal"))/(1<<30)))
	if out, err := run("lxc-start", "--version"); err == nil {
		parts = append(parts, "LXC "+strings.TrimSpace(out))
	}
	if b, err := os.ReadFile("/etc/debian_version"); err == nil {
		parts = append(parts, "Debian "+strings.TrimSpace(string(b)))
	}
	if out, err := run("findmnt", "-n", "-o", "FSTYPE", "-T", *workDir); err == nil {
		parts = append(parts, "scratch on "+strings.TrimSpace(out))
	}
	return strings.Join(parts, ", ")
}
