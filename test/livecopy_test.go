package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
)

// copyJSON is what "copy --json" prints (the fields the tests read).
type copyJSON struct {
	SourceState   string  `json:"source_state"`
	Consistency   string  `json:"consistency"`
	Freeze        string  `json:"freeze"`
	FrozenSeconds float64 `json:"frozen_seconds"`
	WasThere      bool    `json:"freeze_was_there"`
	Layer         *struct {
		Kind            string `json:"kind"`
		Path            string `json:"path"`
		Fsck            string `json:"fsck"`
		OrphansReleased int    `json:"orphans_released"`
		JournalReplayed bool   `json:"journal_replayed"`
	} `json:"layer"`
	Summary string `json:"summary"`
}

func copyWithJSON(t *testing.T, hook string, c *ctr, dst string, extra ...string) copyJSON {
	t.Helper()
	out, stderr, err := adminSplit(t, hook, append([]string{"copy", c.name, dst, "-P", c.lxcpath, "--json"}, extra...)...)
	if err != nil {
		t.Fatalf("copy of the running %s: %v %s%s", c.name, err, out, stderr)
	}
	var r copyJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("copy --json: %v: %s", err, out)
	}
	t.Logf("copy of the running %s: %s", c.name, r.Summary)
	return r
}

// writer appends 1, 2, 3, ... to /root/seq inside c, one line per write,
// for as long as the container runs.
func startWriter(t *testing.T, c *ctr) {
	t.Helper()
	w := exec.Command("lxc-attach", "-n", c.name, "-P", c.lxcpath, "--clear-env", "--", "/bin/sh", "-c",
		"i=0; while :; do i=$((i+1)); echo $i >> /root/seq; done")
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Process.Kill(); w.Wait() })
	waitSeqGrows(t, c, 0, "the writer starting")
}

// seqCount is the number of lines in /root/seq inside c.
func seqCount(t *testing.T, c *ctr) int {
	t.Helper()
	out, err := c.sh("wc -l < /root/seq 2>/dev/null || echo 0")
	if err != nil {
		t.Fatalf("counting /root/seq in %s: %v %s", c.name, err, out)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(out))
	return n
}

// waitSeqGrows waits, bounded, until /root/seq has more than from lines.
func waitSeqGrows(t *testing.T, c *ctr, from int, when string) int {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); sleepBriefly() {
		if n := seqCount(t, c); n > from {
			return n
		}
	}
	t.Fatalf("%s: the writer in %s did not get past line %d in 20s (its writes are blocked)", when, c.name, from)
	return 0
}

// checkSeqPrefix checks /root/seq in the copy d: lines 1..N, every one
// complete, N > 0: a moment of the writer's, not a torn file.
func checkSeqPrefix(t *testing.T, d *ctr) int {
	t.Helper()
	out := d.mustSh("cat /root/seq")
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("/root/seq in the copy ends in a partial line: %q", lastLines(out, 2))
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i, l := range lines {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("/root/seq in the copy: line %d is %q (of %d lines): not a prefix of what the writer wrote", i+1, l, len(lines))
		}
	}
	return len(lines)
}

// recordedImageDevice is the loop device of c's image, from the hooks' record.
func recordedImageDevice(t *testing.T, c *ctr) string {
	t.Helper()
	rec, err := state.For(state.DefaultRoot, c.name, filepath.Join(c.dir, "config")).Load()
	if err != nil || rec == nil {
		t.Fatalf("runtime record of %s: %v", c.name, err)
	}
	for _, l := range rec.Loops {
		if l.Role == "image" {
			return l.Device
		}
	}
	t.Fatalf("no image device in the record of %s", c.name)
	return ""
}

// ext4Frozen asks the kernel whether the ext4 on dev is frozen: in a
// child's private mount namespace, the device is mounted (the same
// superblock) and fsfreeze -u run; "Invalid argument" means it is not
// frozen (had it been, it is thawed now).
func ext4Frozen(t *testing.T, dev string) bool {
	t.Helper()
	mp := filepath.Join(testDir(t), "fsfreeze")
	os.Mkdir(mp, 0o700)
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
		`mount -t ext4 "$1" "$2" || exit 9; fsfreeze -u "$2"; r=$?; umount "$2"; exit $r`, "sh", dev, mp).CombinedOutput()
	if err == nil {
		return true
	}
	if !strings.Contains(string(out), "Invalid argument") {
		t.Fatalf("fsfreeze -u on %s: %v %s", dev, err, out)
	}
	return false
}

// watchdogsOf lists the freeze watchdogs running for container name.
func watchdogsOf(name string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if len(args) == 5 && args[0] == "lxc-hook-freeze-watchdog" && args[4] == name {
			out = append(out, pid)
		}
	}
	return out
}

func waitNoWatchdog(t *testing.T, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); sleepBriefly() {
		if len(watchdogsOf(name)) == 0 {
			return
		}
	}
	t.Fatalf("freeze watchdogs of %s still running: %v", name, watchdogsOf(name))
}

// cgroupFrozen reads the freezer state of c's cgroup, as the kernel has
// it (lxc-info shows its monitor's idea of the state: RUNNING, unless
// lxc-freeze did the freezing).
func cgroupFrozen(t *testing.T, c *ctr) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.pid()) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && strings.Contains(","+parts[1]+",", ",freezer,") && exists("/sys/fs/cgroup/freezer") {
			st, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/freezer", parts[2], "freezer.state"))
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(st)) == "FROZEN"
		}
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			ev, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", p, "cgroup.events"))
			if err != nil {
				t.Fatal(err)
			}
			return strings.Contains(string(ev), "frozen 1")
		}
	}
	t.Fatalf("no freezer cgroup for %s in %q", c.name, b)
	return false
}

// assertNoLoopsNamed is assertNoLoops that names, on failure, the
// processes whose mount namespace has a leftover device mounted (a copy of
// a running container's root, taken by a namespace made meanwhile: by this
// run, or by another on the machine).
func assertNoLoopsNamed(t *testing.T, when string) {
	t.Helper()
	left := loopsUnder(workRoot)
	if len(left) == 0 {
		return
	}
	var who []string
	for _, d := range left {
		var n int
		fmt.Sscanf(d, "/dev/loop%d", &n)
		who = append(who, fmt.Sprintf("%s, mounted in the namespace of: %s", d, holders.Join(holders.WithMountOf(7, n, ""))))
	}
	t.Fatalf("%s: loop devices still attached: %s", when, strings.Join(who, "; "))
}

// probeWrite starts one write inside c; the channel says when it is done.
func probeWrite(c *ctr) <-chan error {
	done := make(chan error, 1)
	go func() {
		out, err := c.sh("echo probe >> /root/probe")
		if err != nil {
			err = fmt.Errorf("%v: %s", err, out)
		}
		done <- err
	}()
	return done
}

func mustBlock(t *testing.T, w <-chan error, what string) {
	t.Helper()
	select {
	case err := <-w:
		t.Fatalf("%s: a write inside completed (%v): the container is not frozen", what, err)
	case <-time.After(time.Second):
	}
}

func mustComplete(t *testing.T, w <-chan error, what string) {
	t.Helper()
	select {
	case err := <-w:
		if err != nil {
			t.Fatalf("%s: the write inside failed: %v", what, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: a write inside is still blocked after 20s: the container was left frozen", what)
	}
}

// copyStoppedAt starts "copy SRC DST" on the running c with a kill point
// armed as POINT/stop, and returns once it has stopped there.
func copyStoppedAt(t *testing.T, hook string, c *ctr, dst, point string, extra ...string) (*exec.Cmd, <-chan error, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, hook), append([]string{"copy", c.name, dst, "-P", c.lxcpath}, extra...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LXC_HOOKS_TEST_KILLPOINT=" + point + "/stop"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, as a terminal's job
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Process.Signal(syscall.SIGCONT)
	})
	for deadline := time.Now().Add(60 * time.Second); !processStopped(cmd.Process.Pid); {
		select {
		case err := <-exited:
			t.Fatalf("copy ended before %s: %v %s", point, err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("copy never reached %s", point)
		}
	}
	return cmd, exited, out
}

// A running loopimg container with a writer inside: the copy freezes the
// image's filesystem for as long as it copies (reported), the copy passes
// e2fsck -fn with no journal to replay, boots, and holds lines 1..N of the
// writer's file; the source keeps running and its writer goes on.
func TestLiveCopyImage(t *testing.T) {
	requireEnv(t)
	hook := "lxc-hook-loopimg"
	c := initCtr(t, hook, "--size", "256M")
	c.mustStart()
	c.mustSh("dd if=/dev/urandom of=/root/blob bs=1M count=48 2>/dev/null && sync")
	startWriter(t, c)
	r := copyWithJSON(t, hook, c, c.name+"-live")
	if r.SourceState != "RUNNING" || r.Consistency != "frozen" || r.Freeze != "filesystem" || r.FrozenSeconds <= 0 || r.Layer == nil || r.Layer.Fsck != "clean" || r.Layer.JournalReplayed {
		t.Fatalf("copy --json of a running container: %+v", r)
	}
	t.Logf("frozen %.3fs", r.FrozenSeconds)
	if c.state() != "RUNNING" {
		t.Fatalf("the source is %s after the copy", c.state())
	}
	after := seqCount(t, c)
	waitSeqGrows(t, c, after, "after the copy")
	if ext4Frozen(t, recordedImageDevice(t, c)) {
		t.Fatal("the source's filesystem was left frozen")
	}

	d := other(c, c.name+"-live")
	img := filepath.Join(d.dir, "layer.img")
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := image.ReadSuperblock(f)
	f.Close()
	if err != nil || sb.NeedsRecovery() {
		t.Fatalf("the copy's journal needs a replay (or no superblock: %v)", err)
	}
	fsckClean(t, img, "the copy of a running container")
	d.mustStart()
	n := checkSeqPrefix(t, d)
	if got := d.mustSh("sha256sum < /root/blob"); got != c.mustSh("sha256sum < /root/blob") {
		t.Fatal("the copy's /root/blob differs from the source's")
	}
	d.stop(false)
	if now := seqCount(t, c); now < n {
		t.Fatalf("the copy has %d lines, the source only %d", n, now)
	}
	t.Logf("the copy holds lines 1..%d; the source went on", n)
	c.stop(false)
	waitNoWatchdog(t, c.name)
	assertNoLoopsNamed(t, "after the live copy")
}

// The copier SIGKILLed halfway through the image, frozen: the watchdog
// thaws (the blocked write inside completes, fsfreeze -u says not frozen,
// the watchdog is gone), the writer goes on, and the partial copy left is
// removed by the next copy, which succeeds.
func TestLiveCopyImageKilled(t *testing.T) {
	requireEnv(t)
	hook := "lxc-hook-loopimg"
	c := initCtr(t, hook, "--size", "256M")
	c.mustStart()
	c.mustSh("dd if=/dev/urandom of=/root/blob bs=1M count=96 2>/dev/null && sync")
	startWriter(t, c)
	dst := c.name + "-live"
	cmd, exited, out := copyStoppedAt(t, hook, c, dst, "copy:image-halfway")
	if len(watchdogsOf(c.name)) != 1 {
		t.Fatalf("no freeze watchdog while the copy is frozen: %v", watchdogsOf(c.name))
	}
	probe := probeWrite(c)
	mustBlock(t, probe, "halfway through the copy")
	cmd.Process.Kill()
	<-exited
	mustComplete(t, probe, "after the copier was SIGKILLed")
	waitNoWatchdog(t, c.name)
	if ext4Frozen(t, recordedImageDevice(t, c)) {
		t.Fatalf("the filesystem is still frozen after the copier was killed (copy said: %s)", out.String())
	}
	waitSeqGrows(t, c, seqCount(t, c), "after the copier was killed")
	dstDir := filepath.Join(c.lxcpath, dst)
	if !exists(dstDir) {
		t.Fatal("the killed copy left no partial directory (the test does not test its removal)")
	}
	r, stderr, err := adminSplit(t, hook, "copy", c.name, dst, "-P", c.lxcpath)
	if err != nil || !strings.Contains(stderr, "partial copy") {
		t.Fatalf("copy after the killed one: %v %s %s", err, r, stderr)
	}
	d := other(c, dst)
	fsckClean(t, filepath.Join(d.dir, "layer.img"), "the copy after the killed one")
	d.mustStart()
	checkSeqPrefix(t, d)
	d.stop(false)
	c.stop(false)
	assertNoLoopsNamed(t, "after the copies")
}

// Ctrl-C while the copy is frozen halfway: the container is thawed first,
// the copy fails saying so, and nothing is left behind.
func TestLiveCopyImageInterrupted(t *testing.T) {
	requireEnv(t)
	hook := "lxc-hook-loopimg"
	c := initCtr(t, hook, "--size", "256M")
	c.mustStart()
	c.mustSh("dd if=/dev/urandom of=/root/blob bs=1M count=96 2>/dev/null && sync")
	startWriter(t, c)
	dst := filepath.Join(c.lxcpath, c.name+"-live")
	cmd, exited, out := copyStoppedAt(t, hook, c, c.name+"-live", "copy:image-halfway")
	probe := probeWrite(c)
	mustBlock(t, probe, "halfway through the copy")
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
	if err := <-exited; err == nil || !strings.Contains(out.String(), "interrupted") || !strings.Contains(out.String(), "thawed after") {
		t.Fatalf("interrupted live copy: %v %s", err, out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	mustComplete(t, probe, "after Ctrl-C")
	waitNoWatchdog(t, c.name)
	if ext4Frozen(t, recordedImageDevice(t, c)) {
		t.Fatal("the filesystem is still frozen after Ctrl-C")
	}
	if exists(dst) {
		t.Fatalf("the interrupted copy left %s", dst)
	}
	waitSeqGrows(t, c, seqCount(t, c), "after Ctrl-C")
	c.stop(false)
	assertNoLoopsNamed(t, "after the interrupted copy")
}

// A running overlay container (a directory layer) with a writer inside:
// copied with the container frozen (cgroup freezer), the copy boots with a
// prefix of the writer's lines (and starts while the source runs: the
// source's claim on its layer was not copied); the source goes on. Then a
// copier SIGKILLed while the container is frozen: thawed by the watchdog.
func TestLiveCopyOverlay(t *testing.T) {
	requireEnv(t)
	hook := "lxc-hook-overlay"
	c := initCtr(t, hook)
	c.mustStart()
	c.mustSh("dd if=/dev/urandom of=/root/blob bs=1M count=16 2>/dev/null")
	startWriter(t, c)
	r := copyWithJSON(t, hook, c, c.name+"-live")
	if r.Consistency != "frozen" || !strings.HasPrefix(r.Freeze, "cgroup-") || r.FrozenSeconds <= 0 || r.Layer == nil || r.Layer.Kind != "directory" {
		t.Fatalf("copy --json of a running overlay container: %+v", r)
	}
	if st := c.state(); st != "RUNNING" {
		t.Fatalf("the source is %s after the copy", st)
	}
	waitSeqGrows(t, c, seqCount(t, c), "after the copy")
	d := other(c, c.name+"-live")
	if exists(filepath.Join(d.dir, "layer", "lxc-hook-in-use")) {
		t.Fatal("the source's claim on its layer was copied")
	}
	d.mustStart()
	n := checkSeqPrefix(t, d)
	t.Logf("the copy holds lines 1..%d; frozen %.3fs (%s)", n, r.FrozenSeconds, r.Freeze)
	d.stop(false)

	// SIGKILL while frozen.
	cmd, exited, _ := copyStoppedAt(t, hook, c, c.name+"-killed", "copy:frozen")
	if !cgroupFrozen(t, c) {
		t.Fatal("the container's cgroup is not frozen while the copy holds it")
	}
	probe := probeWrite(c)
	mustBlock(t, probe, "while frozen")
	cmd.Process.Kill()
	<-exited
	mustComplete(t, probe, "after the copier was SIGKILLed")
	waitNoWatchdog(t, c.name)
	if cgroupFrozen(t, c) {
		t.Fatal("the container's cgroup is still frozen after the copier was killed")
	}
	waitSeqGrows(t, c, seqCount(t, c), "after the copier was killed")

	// Frozen by lxc-freeze before: copied as it is, left frozen.
	if out, err := c.lxc("lxc-freeze"); err != nil {
		t.Fatalf("lxc-freeze: %v %s", err, out)
	}
	r = copyWithJSON(t, hook, c, c.name+"-wasfrozen")
	if r.Consistency != "frozen" || !r.WasThere || !cgroupFrozen(t, c) {
		t.Fatalf("copy of an lxc-frozen container: %+v (frozen after: %v)", r, cgroupFrozen(t, c))
	}
	other(c, c.name+"-wasfrozen")
	if out, err := c.lxc("lxc-unfreeze"); err != nil {
		t.Fatalf("lxc-unfreeze: %v %s", err, out)
	}
	c.stop(false)
}

// A copier that hangs while the filesystem is frozen (SIGSTOPped there):
// the watchdog thaws at --max-freeze by itself, the container's writes go
// on while the copier is still stopped, and the copy, resumed, fails
// saying the freeze ran out, leaving nothing.
func TestLiveCopyMaxFreeze(t *testing.T) {
	requireEnv(t)
	hook := "lxc-hook-loopimg"
	c := initCtr(t, hook, "--size", "64M")
	c.mustStart()
	startWriter(t, c)
	dst := c.name + "-hung"
	cmd, exited, out := copyStoppedAt(t, hook, c, dst, "copy:frozen", "--max-freeze", "4s")
	probe := probeWrite(c)
	mustBlock(t, probe, "frozen, the copier stopped")
	mustComplete(t, probe, "past --max-freeze with the copier hung")
	if !processStopped(cmd.Process.Pid) {
		t.Fatal("the copier was not stopped when the freeze was lifted: the test tests nothing")
	}
	waitNoWatchdog(t, c.name)
	if ext4Frozen(t, recordedImageDevice(t, c)) {
		t.Fatal("still frozen past --max-freeze")
	}
	cmd.Process.Signal(syscall.SIGCONT)
	if err := <-exited; err == nil || !strings.Contains(out.String(), "time limit") {
		t.Fatalf("a copy whose freeze ran out: %v %s", err, out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	if exists(filepath.Join(c.lxcpath, dst)) {
		t.Fatal("the failed copy left its directory")
	}
	waitSeqGrows(t, c, seqCount(t, c), "after the failed copy")
	c.stop(false)
}

// --no-freeze: copied as it runs, said to be crash-consistent only (an
// image's journal replayed in the copy), and the copy boots.
func TestLiveCopyNoFreeze(t *testing.T) {
	requireEnv(t)
	for hook, extra := range copyHooks {
		t.Run(hook, func(t *testing.T) {
			c := initCtr(t, hook, extra...)
			c.mustStart()
			c.mustSh("echo synced > /root/data && sync")
			startWriter(t, c)
			r := copyWithJSON(t, hook, c, c.name+"-nf", "--no-freeze")
			if r.Consistency != "crash-consistent" || r.Freeze != "" || r.FrozenSeconds != 0 || !strings.Contains(r.Summary, "crash-consistent at best") {
				t.Fatalf("copy --no-freeze: %+v", r)
			}
			out, err := admin(t, hook, "copy", c.name, c.name+"-nf2", "-P", c.lxcpath, "--no-freeze")
			if err != nil || !strings.Contains(out, "crash-consistent at best") {
				t.Fatalf("copy --no-freeze says: %v %s", err, out)
			}
			d := other(c, c.name+"-nf")
			d.mustStart()
			// What was synced before the copy is there; the writer's
			// last lines may not be (not written out yet: no freeze
			// flushed them).
			if got := d.mustSh("cat /root/data"); got != "synced\n" {
				t.Fatalf("the --no-freeze copy's /root/data: %q", got)
			}
			d.stop(false)
			other(c, c.name+"-nf2")
			c.stop(false)
		})
	}
}

// lxc-copy --allowrunning of a running container runs the clone hook,
// which copies the layer frozen; without --allowrunning LXC refuses, and
// lxc-snapshot of a running container is refused by LXC itself.
func TestLiveLXCCopy(t *testing.T) {
	requireEnv(t)
	for hook, extra := range copyHooks {
		t.Run(hook, func(t *testing.T) {
			c := initCtr(t, hook, extra...)
			c.mustStart()
			c.mustSh("echo data > /root/data && sync")
			startWriter(t, c)
			if out, err := c.lxc("lxc-copy", "-N", c.name+"-refused"); err == nil {
				t.Fatalf("lxc-copy of a running container without --allowrunning: %s", out)
			}
			if out, err := c.lxc("lxc-snapshot"); err == nil {
				t.Fatalf("lxc-snapshot of a running container: %s", out)
			}
			d := other(c, c.name+"-lxclive")
			if out, err := c.lxc("lxc-copy", "--allowrunning", "-N", d.name); err != nil {
				t.Fatalf("lxc-copy --allowrunning: %v %s\n%s", err, out, lastLines(c.log(), 10))
			}
			waitSeqGrows(t, c, seqCount(t, c), "after lxc-copy")
			d.mustStart()
			if got := d.mustSh("cat /root/data"); got != "data\n" {
				t.Fatalf("lxc-copy's copy: /root/data %q", got)
			}
			checkSeqPrefix(t, d)
			d.stop(false)
			c.stop(false)
			waitNoWatchdog(t, c.name)
		})
	}
}

// Running unprivileged containers, overlay and loopimg: copy and lxc-copy
// --allowrunning make copies that boot with the data, owned by the copy's
// root inside.
func TestLiveCopyUnprivileged(t *testing.T) {
	requireEnv(t)
	for hook, extra := range copyHooks {
		t.Run(hook, func(t *testing.T) {
			c := initUnpriv(t, hook, tplSquash, extra...)
			c.mustStart()
			c.mustSh("echo data > /root/data && sync")
			startWriter(t, c)
			r := copyWithJSON(t, hook, c, c.name+"-live")
			if r.Consistency != "frozen" {
				t.Fatalf("copy of a running unprivileged container: %+v", r)
			}
			byLXC := other(c, c.name+"-lxclive")
			if out, err := c.lxc("lxc-copy", "--allowrunning", "-N", byLXC.name); err != nil {
				t.Fatalf("lxc-copy --allowrunning: %v %s\n%s", err, out, lastLines(c.log(), 10))
			}
			waitSeqGrows(t, c, seqCount(t, c), "after the copies")
			byCopy := other(c, c.name+"-live")
			for _, d := range []*ctr{byCopy, byLXC} {
				// The source's root is attached on its rootfs directory
				// on the host while it runs: not copied into the copy's
				// (LXC's rsync did, the clone hook emptied it).
				if ents, err := os.ReadDir(filepath.Join(d.dir, "rootfs")); err != nil || len(ents) != 0 {
					t.Fatalf("%s: its rootfs directory has %d entries (%v): the source's mounted root was copied", d.name, len(ents), err)
				}
			}
			for _, d := range []*ctr{byCopy, byLXC} {
				if err := d.start(); err != nil {
					t.Fatalf("%s does not start: %v", d.name, err)
				}
				if got := d.mustSh("cat /root/data; stat -c %u:%g /root/data"); got != "data\n0:0\n" {
					t.Fatalf("%s: /root/data and its owner: %q", d.name, got)
				}
				checkSeqPrefix(t, d)
				d.stop(false)
			}
			c.stop(false)
			assertNoLoopsNamed(t, "after the copies stopped")
		})
	}
}
