package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// superblockField is a field of `dumpe2fs -h` for the (unmounted) image.
func superblockField(t *testing.T, img, field string) string {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs -h %s: %v\n%s", img, err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("dumpe2fs -h %s: no %q", img, field)
	return ""
}

// tune2fs runs tune2fs on the (unmounted) image.
func tune2fs(t *testing.T, img string, args ...string) {
	t.Helper()
	if out, err := exec.Command("tune2fs", append(args, img)...).CombinedOutput(); err != nil {
		t.Fatalf("tune2fs %v %s: %v\n%s", args, img, err, out)
	}
}

// fsckLines are the hook's lines about e2fsck on img since the log was
// last emptied (the hooks log one line per e2fsck run, at INFO or WARN).
func fsckLines(c *ctr, img string) []string {
	var out []string
	for _, level := range []string{"INFO", "WARN"} {
		for _, l := range c.hookLogLines(level) {
			if strings.Contains(l, "image "+img+": e2fsck") {
				out = append(out, l)
			}
		}
	}
	return out
}

// startFresh empties the container's log, then starts it.
func (c *ctr) startFresh() {
	c.t.Helper()
	if err := os.Truncate(c.logFile, 0); err != nil && !os.IsNotExist(err) {
		c.t.Fatal(err)
	}
	c.mustStart()
}

// --fsck: what runs e2fsck before the mount, seen in the hook's log line
// and in the image's own record of its last check (dumpe2fs "Last
// checked", set back to 2001 before each start so a check shows). auto
// runs it only when the superblock asks (here: recorded errors, set with
// tune2fs -E force_fsck); always runs a full check at every start; never
// skips even an image whose superblock asks (its recorded errors stay).
func TestLoopimgFsckFlag(t *testing.T) {
	requireEnv(t)
	needTools(t, "apt-get install e2fsprogs", "dumpe2fs", "tune2fs")
	const old = "20010101"
	oldChecked := func(t *testing.T, img string) string {
		t.Helper()
		tune2fs(t, img, "-T", old)
		return superblockField(t, img, "Last checked")
	}
	setup := func(t *testing.T, mode string) (*ctr, string) {
		dir := testDir(t)
		img := filepath.Join(dir, "delta.img")
		c := loopimgCtr(t, dir, img, "--size", "32M", "--fsck", mode)
		c.mustStart() // creates the image
		c.mustSh("echo kept > /root/k && sync")
		c.stop(false)
		return c, img
	}
	t.Run("auto", func(t *testing.T) {
		c, img := setup(t, "auto")
		before := oldChecked(t, img)
		c.startFresh()
		c.stop(false)
		if l := fsckLines(c, img); len(l) > 0 {
			t.Fatalf("--fsck auto ran e2fsck on a clean image:\n%s", strings.Join(l, "\n"))
		}
		if got := superblockField(t, img, "Last checked"); got != before {
			t.Fatalf("--fsck auto on a clean image: last checked %q, was %q", got, before)
		}
		tune2fs(t, img, "-E", "force_fsck")
		if st := superblockField(t, img, "Filesystem state"); !strings.Contains(st, "error") {
			t.Fatalf("tune2fs -E force_fsck: state %q, want errors recorded", st)
		}
		before = oldChecked(t, img)
		c.startFresh()
		if got := c.mustSh("cat /root/k"); got != "kept\n" {
			t.Fatalf("after the check: %q", got)
		}
		c.stop(false)
		l := fsckLines(c, img)
		if len(l) != 1 || !strings.Contains(l[0], "recorded errors") {
			t.Fatalf("--fsck auto on an image with recorded errors: e2fsck lines %q, want one naming the reason", l)
		}
		if got := superblockField(t, img, "Last checked"); got == before {
			t.Fatalf("--fsck auto on an image with recorded errors: last checked still %q", got)
		}
		if st := superblockField(t, img, "Filesystem state"); st != "clean" {
			t.Fatalf("after the check and a stop: state %q", st)
		}
	})
	t.Run("always", func(t *testing.T) {
		c, img := setup(t, "always")
		for i := 0; i < 2; i++ {
			before := oldChecked(t, img)
			c.startFresh()
			c.stop(false)
			if l := fsckLines(c, img); len(l) != 1 || !strings.Contains(l[0], "--fsck=always") {
				t.Fatalf("start %d with --fsck always: e2fsck lines %q, want one", i, l)
			}
			if got := superblockField(t, img, "Last checked"); got == before {
				t.Fatalf("start %d with --fsck always on a clean image: last checked still %q: no full check ran", i, got)
			}
		}
	})
	t.Run("never", func(t *testing.T) {
		c, img := setup(t, "never")
		tune2fs(t, img, "-E", "force_fsck")
		before := oldChecked(t, img)
		c.startFresh()
		if got := c.mustSh("cat /root/k"); got != "kept\n" {
			t.Fatalf("%q", got)
		}
		c.stop(false)
		if l := fsckLines(c, img); len(l) > 0 {
			t.Fatalf("--fsck never ran e2fsck:\n%s", strings.Join(l, "\n"))
		}
		if got := superblockField(t, img, "Last checked"); got != before {
			t.Fatalf("--fsck never: last checked %q, was %q", got, before)
		}
		if st := superblockField(t, img, "Filesystem state"); !strings.Contains(st, "error") {
			t.Fatalf("--fsck never: state %q: the recorded errors are gone, so something checked it", st)
		}
	})
}

// imageDevice is the loop device ("loopN") the image img is attached to,
// found by the image's device and inode (loopsUnder).
func imageDevice(t *testing.T, dir, img string) string {
	t.Helper()
	var devs []string
	for _, l := range loopsUnder(dir) {
		if strings.HasSuffix(l, " ("+img+")") {
			devs = append(devs, strings.TrimPrefix(strings.Fields(l)[0], "/dev/"))
		}
	}
	if len(devs) != 1 {
		t.Fatalf("loop devices on %s: %v, want one", img, loopsUnder(dir))
	}
	return devs[0]
}

// ext4Options are the mount options of the ext4 filesystem on a device, as
// the kernel lists them (/proc/fs/ext4/DEV/options): the image is mounted
// only in the container's mount namespace, outside its root.
func ext4Options(t *testing.T, dev string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/fs/ext4/" + dev + "/options")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// --discard (the default for a sparse image): 40M written and deleted
// inside are given back to the host (the image's blocks on the host
// shrink again); --discard=false keeps them allocated, also once the
// container stopped (no discard was pending then). The ext4 mount has, or
// lacks, the discard option.
func TestLoopimgDiscardFlag(t *testing.T) {
	requireEnv(t)
	for _, discard := range []bool{true, false} {
		name := map[bool]string{true: "default", false: "--discard=false"}[discard]
		t.Run(name, func(t *testing.T) {
			dir := testDir(t)
			img := filepath.Join(dir, "delta.img")
			args := []string{"--size", "64M"}
			if !discard {
				args = append(args, "--discard=false")
			}
			c := loopimgCtr(t, dir, img, args...)
			c.mustStart()
			if opts := ext4Options(t, imageDevice(t, dir, img)); has(opts, "discard") != discard {
				t.Fatalf("ext4 mount options %v: discard %v, want %v", opts, has(opts, "discard"), discard)
			}
			before := allocated(t, img)
			c.mustSh("dd if=/dev/zero of=/root/big bs=1M count=40 && sync")
			full := allocated(t, img)
			if full < before+32<<20 {
				t.Fatalf("40M written inside: the image holds %d MiB on the host, was %d MiB", full>>20, before>>20)
			}
			c.mustSh("rm /root/big && sync")
			if discard {
				// ext4 sends the discards after its journal commit,
				// asynchronously: a bounded wait for the holes.
				freed := allocated(t, img)
				for i := 0; i < 500 && freed > full-32<<20; i++ {
					sleepBriefly()
					freed = allocated(t, img)
				}
				if freed > full-32<<20 {
					t.Fatalf("deleting 40M inside left the image at %d MiB on the host (%d MiB when full): no discard", freed>>20, full>>20)
				}
				t.Logf("deleting 40M inside gave the host back %d MiB", (full-freed)>>20)
			}
			c.stop(false)
			after := allocated(t, img)
			if !discard && after < full-4<<20 {
				t.Fatalf("--discard=false: deleting 40M inside shrank the image on the host from %d to %d MiB", full>>20, after>>20)
			}
			if discard && after > full-32<<20 {
				t.Fatalf("after the stop the image holds %d MiB on the host (%d MiB when full)", after>>20, full>>20)
			}
			t.Logf("%s: %d MiB on the host before, %d MiB full, %d MiB after deleting and stopping", name, before>>20, full>>20, after>>20)
			fsckClean(t, img, "after stop")
		})
	}
}

// --direct-io: on by default, the image's loop device bypasses the host's
// page cache (/sys/block/loopN/loop/dio = 1); --direct-io=false turns it
// off; an image on a host filesystem that refuses O_DIRECT (ramfs: on
// this kernel tmpfs accepts it) starts with buffered I/O and a line in
// the LXC log saying so.
func TestLoopimgDirectIOFlag(t *testing.T) {
	requireEnv(t)
	dio := func(t *testing.T, dev string) string {
		t.Helper()
		b, err := os.ReadFile("/sys/block/" + dev + "/loop/dio")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	const refused = "refuses direct I/O"
	for _, tc := range []struct {
		name  string
		args  []string
		ramfs bool
		want  string
	}{
		{"default", nil, false, "1"},
		{"--direct-io=false", []string{"--direct-io=false"}, false, "0"},
		{"ramfs refuses O_DIRECT", nil, true, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			imgDir := dir
			if tc.ramfs {
				imgDir = filepath.Join(dir, "ramfs")
				os.Mkdir(imgDir, 0o755)
				if err := unix.Mount("lxc-hooks-test", imgDir, "ramfs", 0, "mode=0755"); err != nil {
					t.Fatalf("ramfs: %v", err)
				}
				t.Cleanup(func() { unix.Unmount(imgDir, unix.MNT_DETACH) })
			}
			img := filepath.Join(imgDir, "delta.img")
			c := loopimgCtr(t, dir, img, append([]string{"--size", "32M"}, tc.args...)...)
			for i := 0; i < 2; i++ { // the start that creates the image, and one that finds it
				c.startFresh()
				dev := imageDevice(t, dir, img)
				if got := dio(t, dev); got != tc.want {
					t.Fatalf("start %d: %s/loop/dio = %s, want %s", i, dev, got, tc.want)
				}
				var lines []string
				for _, l := range c.hookLogLines("INFO") {
					if strings.Contains(l, refused) {
						lines = append(lines, l)
					}
				}
				if tc.ramfs && (len(lines) != 1 || !strings.Contains(lines[0], img)) {
					t.Fatalf("start %d on ramfs: lines saying direct I/O was refused: %q, want one naming the image", i, lines)
				}
				if !tc.ramfs && len(lines) > 0 {
					t.Fatalf("start %d: %q", i, lines)
				}
				c.mustSh("echo kept > /root/k && sync")
				c.stop(false)
				assertNoLoops(t, dir, "after stop")
			}
			fsckClean(t, img, "after stop")
		})
	}
}
