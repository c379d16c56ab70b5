package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/image"
)

// The "livecopy" step (-only livecopy): what a consistent copy of a
// running container costs it. A loopimg container (4 GiB image) and an
// overlay container get data written inside (cumulatively, up to each
// size), and each is copied while it runs, with `copy SRC DST --json`; the
// figure is the time frozen as the freeze watchdog measured it.
var (
	lcSizes  = flag.String("livecopy-sizes", "50M,500M,2G", "data written into the running container before its copies (livecopy step)")
	lcRounds = flag.Int("livecopy-rounds", 3, "copies per size and layer, each cold and warm (livecopy step)")
)

type livecopyRow struct {
	layer  string // "image (4 GiB, loopimg)", "directory (overlay)"
	data   int64
	method string
	copied int64 // allocated bytes of the copy
	// frozen and took (the whole command, e2fsck included), cold (page
	// cache dropped first) and warm (right after a copy).
	frozenCold, frozenWarm, tookCold, tookWarm []time.Duration
}

type livecopyResult struct {
	fs       string
	reflink  string
	reflinks bool
	rows     []*livecopyRow
	loadMin  float64
	loadMax  float64
	started  time.Time
	finished time.Time
}

func loadavg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}

// reflinkSupport says whether the scratch filesystem shares extents.
func reflinkSupport(dir string) string {
	a, err := os.CreateTemp(dir, "reflink-a-")
	must(err)
	defer os.Remove(a.Name())
	defer a.Close()
	a.Write([]byte("x"))
	b, err := os.CreateTemp(dir, "reflink-b-")
	must(err)
	defer os.Remove(b.Name())
	defer b.Close()
	if err := unix.IoctlFileClone(int(b.Fd()), int(a.Fd())); err != nil {
		return fmt.Sprintf("no reflink (FICLONE: %v)", err)
	}
	return "reflink (FICLONE works)"
}

type copyOut struct {
	FrozenSeconds float64 `json:"frozen_seconds"`
	TookSeconds   float64 `json:"took_seconds"`
	Consistency   string  `json:"consistency"`
	Layer         struct {
		Method         string `json:"method"`
		AllocatedBytes int64  `json:"allocated_bytes"`
	} `json:"layer"`
}

func (b *bench) livecopyRun() *livecopyResult {
	res := &livecopyResult{started: time.Now(), loadMin: loadavg(), loadMax: loadavg()}
	res.fs = "?"
	if out, err := run("findmnt", "-n", "-o", "FSTYPE", "-T", *workDir); err == nil {
		res.fs = strings.TrimSpace(out)
	}
	res.reflink = reflinkSupport(*workDir)
	res.reflinks = strings.HasPrefix(res.reflink, "reflink")
	var sizes []int64
	for _, s := range strings.Split(*lcSizes, ",") {
		n, err := image.ParseSize(strings.TrimSpace(s))
		must(err)
		sizes = append(sizes, n)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
	load := func() {
		l := loadavg()
		if l < res.loadMin {
			res.loadMin = l
		}
		if l > res.loadMax {
			res.loadMax = l
		}
	}
	for _, kind := range []struct {
		variant, label, bin string
		args                []string
	}{
		{"loopimg", "image (4 GiB, loopimg)", "lxc-hook-loopimg", []string{"--size", "4G"}},
		{"overlay", "directory (overlay)", "lxc-hook-overlay", nil},
	} {
		c := b.newCtr("livecopy-"+kind.variant, kind.variant, kind.args...)
		_, err := c.start()
		must(err)
		written := int64(0)
		for _, size := range sizes {
			step(fmt.Sprintf("livecopy: %s, %s written", kind.label, image.Human(size)))
			mib := (size - written) >> 20
			if _, err := c.sh(fmt.Sprintf("dd if=/dev/urandom of=/root/data-%d bs=1M count=%d conv=fsync 2>/dev/null", size, mib)); err != nil {
				fatalf("writing %d MiB in %s: %v", mib, c.name, err)
			}
			written = size
			row := &livecopyRow{layer: kind.label, data: size}
			for i := 0; i < *lcRounds; i++ {
				for _, cold := range []bool{true, false} {
					if cold {
						dropCaches()
					}
					load()
					dst := c.name + "-copy"
					out, err := run(filepath.Join(b.bin, kind.bin), "copy", c.name, dst, "-P", b.lxcpath, "--json")
					load()
					if err != nil {
						fatalf("copy of the running %s: %v", c.name, err)
					}
					var r copyOut
					must(json.Unmarshal([]byte(out), &r))
					if r.Consistency != "frozen" {
						fatalf("copy of the running %s: consistency %q", c.name, r.Consistency)
					}
					row.method, row.copied = r.Layer.Method, r.Layer.AllocatedBytes
					frozen, took := time.Duration(r.FrozenSeconds*float64(time.Second)), time.Duration(r.TookSeconds*float64(time.Second))
					if cold {
						row.frozenCold, row.tookCold = append(row.frozenCold, frozen), append(row.tookCold, took)
					} else {
						row.frozenWarm, row.tookWarm = append(row.frozenWarm, frozen), append(row.tookWarm, took)
					}
					if _, err := run("lxc-destroy", "-n", dst, "-P", b.lxcpath); err != nil {
						fatalf("lxc-destroy %s: %v", dst, err)
					}
				}
			}
			fmt.Printf("   frozen cold %s, warm %s\n", ms(median(row.frozenCold)), ms(median(row.frozenWarm)))
			res.rows = append(res.rows, row)
		}
		_, err = c.stop(false)
		must(err)
	}
	res.finished = time.Now()
	return res
}

func spread(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s (%s – %s)", secs(median(s)), secs(s[0]), secs(s[len(s)-1]))
}

func secs(d time.Duration) string {
	if d < time.Second {
		return ms(d)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func (res *livecopyResult) markdown() string {
	var b strings.Builder
	w := func(f string, a ...interface{}) { fmt.Fprintf(&b, f, a...) }
	w("## Copies of a running container: time frozen\n\n")
	w("Measured %s on %s with `./scripts/bench.sh -only livecopy -livecopy-rounds %d` (%s). ",
		res.started.UTC().Format("2006-01-02 15:04 MST"), machine(), *lcRounds, res.finished.Sub(res.started).Round(time.Second))
	if res.reflinks {
		w("The scratch filesystem is %s: %s, so an image is a reflink (FICLONE: its extents shared, nothing copied) and a directory layer is copied with `cp -a`. ", res.fs, res.reflink)
	} else {
		w("The scratch filesystem is %s: %s, so an image is copied by its data ranges (`SEEK_DATA`/`SEEK_HOLE`, `copy_file_range`) and a directory layer with `cp -a`; on a filesystem with reflinks (btrfs, XFS) an image is a reflink instead, which this step then measures. ", res.fs, res.reflink)
	}
	w("Load average (1 minute) during the step: %.1f – %.1f on 2 CPUs shared with other test runs, so these are figures under load, not a quiet machine's. ", res.loadMin, res.loadMax)
	w("Each row: a running container with that much data written inside (random bytes, cumulatively), copied %d× cold (page cache dropped first: a container that has run a while) and %d× warm (right after a copy), with `copy SRC DST --json`. ", *lcRounds, *lcRounds)
	w("Frozen = what the freeze watchdog measured, from the freeze request to the thaw's return: the time the container's writes (image: FIFREEZE, reads go on) or its processes (directory: cgroup freezer) waited, the copy's only cost to it. Whole copy = the command's wall time (the config, the fsck of the image copy after the thaw). Median (min – max).\n\n")
	w("| layer | data written | copied (allocated) | method | frozen, cold | frozen, warm | whole copy, cold |\n|---|---|---|---|---|---|---|\n")
	for _, r := range res.rows {
		w("| %s | %s | %s | %s | %s | %s | %s |\n", r.layer, image.Human(r.data), fmt.Sprintf("%.0f MiB", float64(r.copied)/(1<<20)), r.method, spread(r.frozenCold), spread(r.frozenWarm), spread(r.tookCold))
	}
	return b.String()
}

// Section markers of the livecopy step, as for the formats step.
const (
	livecopyBegin = "<!-- livecopy: begin (bench -only livecopy) -->"
	livecopyEnd   = "<!-- livecopy: end -->"
)
