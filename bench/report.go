package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

type startStopRow struct {
	variant     string
	start, stop time.Duration
}

// phaseRow is a hook variant's debug pass: its runs per hook type.
type phaseRow struct {
	variant string
	runs    map[string][]hookRun
}

// execRow is what starting a program costs here, the program doing
// nothing: wall time of fork, exec, its runtime's start and its exit.
type execRow struct {
	what   string
	wall   time.Duration
	faults int64 // minor page faults (median)
}

type ioRow struct {
	variant             string
	cachePerMiB         float64
	writeMBps, readMBps float64
}

type parallelRow struct {
	variant      string
	n, ok        int
	start, stop  time.Duration
	loopsRunning int
	loopsLeft    int
	memUsed      int64
}

type sizeRow struct {
	name  string
	bytes int64
}

type report struct {
	started, finished time.Time
	machine           string
	sizes             []sizeRow
	attach            time.Duration
	startStop         []startStopRow
	phases            []phaseRow
	execs             []execRow
	rssKB             int64
	pageFault         time.Duration // one first touch of an anonymous page
	io                []ioRow
	parallel          []parallelRow
	density           []densityResult
}

func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// floorOf is the floor a variant is measured against: the no-op Go hook on
// the same keys, privileged or unprivileged.
func (r *report) floorOf(v string) startStopRow {
	switch v {
	case "floor", "floor-unpriv":
		return startStopRow{} // floors themselves
	case "noop-unpriv":
		return r.row("floor-unpriv")
	case "noop", "true-hooks", "shell", "lxc-overlay", "lxc-loop":
		return r.row("floor")
	}
	if strings.Contains(v, "-unpriv") {
		return r.row("noop-unpriv")
	}
	return r.row("noop")
}

func (r *report) row(v string) startStopRow {
	for _, s := range r.startStop {
		if s.variant == v {
			return s
		}
	}
	return startStopRow{}
}

func mark(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(f string, a ...interface{}) { fmt.Fprintf(&b, f, a...) }
	w("# Benchmarks\n\n")
	w("Measured %s on %s. Rerun with `./scripts/bench.sh` (as root; installs gnuplot and GNU time where missing; about %s).\n\n",
		r.started.UTC().Format("2006-01-02 15:04 MST"), r.machine, r.finished.Sub(r.started).Round(time.Minute))
	w("Variants: **floor** is LXC's own dir rootfs on the extracted template with no hook; **noop** is the floor with a static Go binary that does nothing ([`bench/noop`](../bench/noop/main.go), built as the hooks are) on the two keys the hooks use, `lxc.hook.pre-mount` and `lxc.hook.stop`: what any Go hook costs before it does any work (LXC's `sh -c`, the exec, the Go runtime's start), **the floor each hook is measured against**; **true-hooks** is the floor with `/bin/true` on those keys (LXC's own cost of running hooks at all); **shell** is [`bench/ref-hook.sh`](../bench/ref-hook.sh), ")
	w("what a sysadmin writes today (util-linux `mount -o loop` of the squashfs template and of an ext4 image, `mount -t overlay`); ")
	w("**overlay** is `lxc-hook-overlay` (directory layer), **loopimg** `lxc-hook-loopimg` (ext4 image layer), both over the template in the project's default format (erofs, made by `template`); ")
	w("**-dirtpl** variants boot over the extracted template directory, as the floors do (and as the issue measured), which separates the hook's own cost from the template's; **loopimg-squashfs** over mksquashfs's default (gzip) image, whose decompression every start after the template's device was freed pays again; ")
	w("**lxc-overlay** and **lxc-loop** are LXC's own overlay backend (directory template, directory upper) and loop backend (an ext4 image of the template), with no hook: what the hooks replace. ")
	w("The **-unpriv** variants are unprivileged containers (`lxc.idmap = u 0 %d 65536`, the same for g", unprivBase)
	if newxidmap() {
		w("; LXC writes the mapping with newuidmap and newgidmap, installed here")
	}
	w("): **floor-unpriv** is LXC's own dir rootfs with `lxc.rootfs.options = idmap=container`, **noop-unpriv** that with the no-op binary on `lxc.hook.pre-start` and `lxc.hook.stop`, and the hooks build the root in pre-start and attach it where LXC takes it. ")
	w("Every hook variant runs one hook process per start and one per stop, on the keys `init` writes, at LXC's log level WARN, so a good run logs nothing (as a user's containers); a pass of its own at debug level says where the time goes (below). The template is busybox-static.\n\n")

	w("## Start and stop (medians of %d interleaved rounds)\n\n", *rounds)
	w("![start and stop times](benchmarks-startstop.png)\n\n")
	w("| variant | lxc-start | lxc-stop | start over its floor | stop over its floor |\n|---|---|---|---|---|\n")
	for _, s := range r.startStop {
		fl := r.floorOf(s.variant)
		overStart, overStop := "", ""
		if fl.variant != "" && fl.variant != s.variant {
			overStart = fmt.Sprintf("%+.1f ms (%s)", float64(s.start-fl.start)/1e6, fl.variant)
			overStop = fmt.Sprintf("%+.1f ms", float64(s.stop-fl.stop)/1e6)
		}
		w("| %s | %s | %s | %s | %s |\n", s.variant, ms(s.start), ms(s.stop), overStart, overStop)
	}
	floor, shell, li := r.row("floor"), r.row("shell"), r.row("loopimg")
	w("\nLoop attach (LOOP_CTL_GET_FREE + LOOP_CONFIGURE, median of 200): **%s**.\n\n", fmt.Sprintf("%.0f µs", float64(r.attach)/float64(time.Microsecond)))
	w("%s", r.phasesMarkdown())

	w("## Targets\n\n| target | figure | |\n|---|---|---|\n")
	for _, h := range []string{"overlay", "loopimg", "overlay-dirtpl", "loopimg-dirtpl", "overlay-unpriv", "loopimg-unpriv", "overlay-unpriv-dirtpl"} {
		v, fl := r.row(h), r.floorOf(h)
		if v.start == 0 || fl.start == 0 {
			continue
		}
		startMax, stopMax := 5*time.Millisecond, 3*time.Millisecond
		if strings.Contains(h, "-unpriv") {
			startMax = 8 * time.Millisecond
		}
		over := v.start - fl.start
		w("| %s start ≤ %s + %s | %s over (%s vs %s) | %s |\n", h, fl.variant, ms(startMax), ms(over), ms(v.start), ms(fl.start), mark(over <= startMax))
		over = v.stop - fl.stop
		w("| %s stop ≤ %s + %s | %s over (%s vs %s) | %s |\n", h, fl.variant, ms(stopMax), ms(over), ms(v.stop), ms(fl.stop), mark(over <= stopMax))
	}
	if shell.start != 0 {
		w("| loopimg start ≤ ½ shell hook's start | %s vs %s | %s |\n", ms(li.start), ms(shell.start), mark(li.start*2 <= shell.start))
		w("| loopimg stop no slower than the shell hook's | %s vs %s | %s |\n", ms(li.stop), ms(shell.stop), mark(li.stop <= shell.stop))
	}
	_ = floor
	w("| loop attach < 1 ms | %.0f µs | %s |\n", float64(r.attach)/float64(time.Microsecond), mark(r.attach < time.Millisecond))
	for _, io := range r.io {
		if io.variant == "loopimg-dio" {
			w("| page cache ≤ 1.2 MiB per MiB written (loopimg, direct I/O) | %.2f | %s |\n", io.cachePerMiB, mark(io.cachePerMiB <= 1.2))
		}
	}
	var ovl, dio ioRow
	for _, io := range r.io {
		switch io.variant {
		case "overlay":
			ovl = io
		case "loopimg-dio":
			dio = io
		}
	}
	if ovl.writeMBps > 0 {
		w("| loopimg sequential write ≥ 90%% of overlay-on-directory | %.0f%% (%.0f vs %.0f MB/s) | %s |\n", 100*dio.writeMBps/ovl.writeMBps, dio.writeMBps, ovl.writeMBps, mark(dio.writeMBps >= 0.9*ovl.writeMBps))
	}
	for _, p := range r.parallel {
		if p.variant == "loopimg" {
			w("| %d parallel starts, %d successes | %d | %s |\n", p.n, p.n, p.ok, mark(p.ok == p.n))
		}
	}
	maxSize := int64(0)
	for _, s := range r.sizes {
		if s.bytes > maxSize {
			maxSize = s.bytes
		}
	}
	w("| each binary ≤ 4 MiB stripped | largest %.2f MiB | %s |\n", float64(maxSize)/(1<<20), mark(maxSize <= 4<<20))
	w("| a hook run < 15 MiB RSS | %.1f MiB peak | %s |\n", float64(r.rssKB)/1024, mark(r.rssKB < 15*1024))

	w("\nWhere a target is missed, [benchmarks-analysis.md](benchmarks-analysis.md) shows where the time goes (profiles, LXC trace timestamps, variants that isolate each cost).\n")
	w("\n## Page cache and throughput inside (512 MiB sequential, dd with conv=fsync; caches dropped before; medians of %d interleaved rounds)\n\n", *ioRounds)
	w("| variant | page cache per MiB written | write MB/s | read MB/s |\n|---|---|---|---|\n")
	for _, io := range r.io {
		w("| %s | %.2f MiB | %.0f | %.0f |\n", io.variant, io.cachePerMiB, io.writeMBps, io.readMBps)
	}

	w("\n## Parallel starts\n\n| variant | containers | started | start all | stop all | loop devices while running | left after stop |\n|---|---|---|---|---|---|---|\n")
	for _, p := range r.parallel {
		w("| %s | %d | %d | %s | %s | %d | %d |\n", p.variant, p.n, p.ok, p.start.Round(time.Millisecond), p.stop.Round(time.Millisecond), p.loopsRunning, p.loopsLeft)
	}
	if len(r.density) > 0 {
		w("\n%s", densityMarkdown(r.density))
	}

	w("\n## Binaries (stripped, static)\n\n| binary | size |\n|---|---|\n")
	for _, s := range r.sizes {
		w("| %s | %.2f MiB (%d bytes) |\n", s.name, float64(s.bytes)/(1<<20), s.bytes)
	}
	w("\nPeak RSS of one hook run (GNU time, largest over pre-mount and stop of 5 loopimg cycles): %.1f MiB.\n", float64(r.rssKB)/1024)
	return b.String()
}

// phasesMarkdown says where each hook's time goes: what starting the
// binary costs over the no-op one, then the hook's own phases (medians of
// the debug pass).
func (r *report) phasesMarkdown() string {
	var b strings.Builder
	w := func(f string, a ...interface{}) { fmt.Fprintf(&b, f, a...) }
	w("## Where the time goes\n\n")
	if len(r.execs) > 0 {
		w("Starting a program that does nothing (fork, exec, runtime start, exit; medians of %d interleaved runs):", execRuns)
		for _, e := range r.execs {
			w(" %s %s (%d page faults);", e.what, ms(e.wall), e.faults)
		}
		w(" the difference between the no-op Go binary and a hook binary is what the hook's size and its packages' initialization cost at every run, before `main`.")
		if r.pageFault > 0 {
			w(" Touching a fresh page costs %.1f µs here (median of 2000 first touches of anonymous memory: in this paravirtualized guest each page fault goes through the hypervisor), so the page faults alone are a large part of each figure.", float64(r.pageFault)/float64(time.Microsecond))
		}
		w("\n\n")
	}
	w("Each hook's own run (from its `main` to its exit; medians of %d runs with the hooks at debug level): **took** is the wall time, **cpu** the CPU time of the whole process (its start and the Go runtime's threads included), **faults** its minor page faults (pages it touched first), then each phase's wall time in order: `setup` (arguments, the LXC log, the binary's own trust check), and for a start `prepare` (runtime records), `writable` (the layer: for an image, its loop device and its ext4 mount), `lowers` (the template's shared loop device and mount), `idmap` (idmapped clones), `union` (the overlay mount), `save` (the runtime record), `attach` (the unprivileged root onto the rootfs path); for a stop `load`, `unmount` (entering the container's namespace, detaching its root: the filesystems' teardown runs here), `host` (an unprivileged root's host mount), `verify` (the loop devices), `rest` (records removed, the log line).\n\n", *rounds)
	w("| variant | hook | took | cpu | faults | phases (ms) |\n|---|---|---|---|---|---|\n")
	for _, p := range r.phases {
		for _, typ := range []string{"pre-start", "pre-mount", "stop"} {
			runs := p.runs[typ]
			if len(runs) == 0 {
				continue
			}
			var took, cpu, faults []time.Duration
			ph := map[string][]time.Duration{}
			var order []string
			for _, run := range runs {
				took, cpu = append(took, run.took), append(cpu, run.cpu)
				faults = append(faults, time.Duration(run.faults))
				for _, k := range run.order {
					if _, ok := ph[k]; !ok {
						order = append(order, k)
					}
					ph[k] = append(ph[k], run.phases[k])
				}
			}
			var parts []string
			for _, k := range order {
				parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(median(ph[k]))/1e6))
			}
			w("| %s | %s | %s | %s | %d | %s |\n", p.variant, typ, ms(median(took)), ms(median(cpu)), int64(median(faults)), strings.Join(parts, ", "))
		}
	}
	w("\n")
	return b.String()
}

func (r *report) summary() string {
	var b strings.Builder
	for _, s := range r.startStop {
		fmt.Fprintf(&b, "%-8s start %s stop %s\n", s.variant, ms(s.start), ms(s.stop))
	}
	return b.String()
}

// chart draws start and stop medians per variant with gnuplot.
func (r *report) chart(path string) error {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		return fmt.Errorf("gnuplot not installed: no chart")
	}
	dir, err := os.MkdirTemp("", "bench-chart")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var data strings.Builder
	for _, s := range r.startStop {
		fmt.Fprintf(&data, "%s %.2f %.2f\n", s.variant, float64(s.start)/1e6, float64(s.stop)/1e6)
	}
	dat := filepath.Join(dir, "d.dat")
	if err := os.WriteFile(dat, []byte(data.String()), 0o644); err != nil {
		return err
	}
	abs, _ := filepath.Abs(path)
	script := fmt.Sprintf(`set terminal png size 800,450
set output '%s'
set title 'Container start and stop, medians of %d interleaved rounds (%s)'
set ylabel 'milliseconds'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set grid ytics
set key top left
plot '%s' using 2:xtic(1) title 'lxc-start', '' using 3 title 'lxc-stop'
`, abs, *rounds, r.started.UTC().Format("2006-01-02"), dat)
	sp := filepath.Join(dir, "p.gp")
	if err := os.WriteFile(sp, []byte(script), 0o644); err != nil {
		return err
	}
	out, err := exec.Command("gnuplot", sp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("gnuplot: %v: %s", err, out)
	}
	return nil
}
