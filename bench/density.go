package main

import (
	"fmt"
	"strings"
	"time"
)

type densityResult struct {
	k                               int
	floor, trueHooks, noop, loopimg parallelRow
}

// densityRun starts K containers from one squashfs template, each with its
// own (already made) image, all at once, against K no-hook containers on
// the extracted template, in one run; then stops each set at once.
func (b *bench) densityRun(k int) densityResult {
	res := densityResult{k: k}
	rows := b.parallelRun(k, []string{"floor", "true-hooks", "noop", "loopimg"})
	res.floor, res.trueHooks, res.noop, res.loopimg = rows[0], rows[1], rows[2], rows[3]
	return res
}

func densityMarkdown(ds []densityResult) string {
	var b strings.Builder
	w := func(f string, a ...interface{}) { fmt.Fprintf(&b, f, a...) }
	w("## Density: K containers from one template, started and stopped all at once\n\n")
	w("The middle columns are LXC with `/bin/true`, then with the no-op static Go binary, on the same two hook keys (pre-mount, stop): what running hooks at all costs LXC, and what any Go hook costs, before a hook does work. Ratios are to the no-hook time.\n\n")
	w("| K | no hook: start all | /bin/true hooks | no-op Go hooks | loopimg: start all | ratio (target ≤ 1.5) | no hook: stop all | /bin/true hooks | no-op Go hooks | loopimg: stop all | ratio (target ≤ 1.5) | loopimg started | loop devices while running (target 1 + K) | left after stop | memory used, no hook / loopimg |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, d := range ds {
		w("| %d | %s | %s (%.2f) | %s (%.2f) | %s | %.2f | %s | %s (%.2f) | %s (%.2f) | %s | %.2f | %d of %d | %d | %d | %.1f / %.1f GiB |\n", d.k,
			d.floor.start.Round(10*time.Millisecond), d.trueHooks.start.Round(10*time.Millisecond), d.trueHooks.start.Seconds()/d.floor.start.Seconds(),
			d.noop.start.Round(10*time.Millisecond), d.noop.start.Seconds()/d.floor.start.Seconds(),
			d.loopimg.start.Round(10*time.Millisecond), d.loopimg.start.Seconds()/d.floor.start.Seconds(),
			d.floor.stop.Round(10*time.Millisecond), d.trueHooks.stop.Round(10*time.Millisecond), d.trueHooks.stop.Seconds()/d.floor.stop.Seconds(),
			d.noop.stop.Round(10*time.Millisecond), d.noop.stop.Seconds()/d.floor.stop.Seconds(),
			d.loopimg.stop.Round(10*time.Millisecond), d.loopimg.stop.Seconds()/d.floor.stop.Seconds(),
			d.loopimg.ok, d.k, d.loopimg.loopsRunning, d.loopimg.loopsLeft,
			float64(d.floor.memUsed)/(1<<30), float64(d.loopimg.memUsed)/(1<<30))
	}
	return b.String()
}
