package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A squashfs template, a writable directory: writes persist over a
// restart and land in --upper; the template file is never changed; hook
// versions 0 and 1 behave the same.
func TestOverlayPersistsAndKeepsTemplate(t *testing.T) {
	requireEnv(t)
	for _, version := range []int{0, 1} {
		t.Run("hook.version="+strconv.Itoa(version), func(t *testing.T) {
			dir := testDir(t)
			tpl := filepath.Join(dir, "tpl.squashfs")
			copyFile(t, tplSquash, tpl)
			before := fileSHA(t, tpl)
			upper := filepath.Join(dir, "layer")
			c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", hookVersion: version,
				args: []string{"--lower", tpl, "--upper", upper}})

			c.mustStart()
			if got := c.mustSh("cat /etc/from-template"); got != "template file\n" {
				t.Fatalf("template not visible inside: %q", got)
			}
			c.mustSh("echo persisted > /root/note && rm /etc/from-template && sync")
			c.stop(false)
			assertNoLoops(t, dir, "after lxc-stop")

			b, err := os.ReadFile(filepath.Join(upper, "upper", "root", "note"))
			if err != nil || string(b) != "persisted\n" {
				t.Fatalf("write did not land under --upper: %q %v", b, err)
			}
			fi, err := os.Stat(upper)
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("--upper not created 0700: %v %v", fi.Mode(), err)
			}

			c.mustStart()
			if got := c.mustSh("cat /root/note"); got != "persisted\n" {
				t.Fatalf("after restart: %q", got)
			}
			if out, err := c.sh("cat /etc/from-template"); err == nil {
				t.Fatalf("deleted template file came back: %q", out)
			}
			c.stop(true)
			assertNoLoops(t, dir, "after lxc-stop -k")

			if after := fileSHA(t, tpl); after != before {
				t.Fatal("the template file changed")
			}
			if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
				t.Fatalf("hook logged errors on a clean run: %v", errs)
			}
			if run := c.runDir(); exists(run) {
				t.Fatalf("runtime directory %s left after a clean stop", run)
			}
		})
	}
}

// With no --lower, the extracted template that lxc.rootfs.path names is the
// lower, and stays byte-for-byte unchanged.
func TestOverlayDefaultLowerLeavesTemplateDirUnchanged(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	rootfs := filepath.Join(dir, "rootfs")
	if out, err := exec.Command("cp", "-a", tplDir, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	before := treeSHA(t, rootfs)
	upper := filepath.Join(dir, "layer")
	c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", rootfs: rootfs, args: []string{"--upper", upper}})
	c.mustStart()
	c.mustSh("echo new > /etc/hostname && echo x > /root/created && rm /etc/from-template && mkdir -p /var/lib/app")
	c.stop(false)
	if after := treeSHA(t, rootfs); after != before {
		t.Fatal("the extracted template directory changed")
	}
	if b, _ := os.ReadFile(filepath.Join(upper, "upper", "etc", "hostname")); string(b) != "new\n" {
		t.Fatalf("write not in the upper layer: %q", b)
	}
	c.mustStart()
	if got := c.mustSh("cat /etc/hostname /root/created"); got != "new\nx\n" {
		t.Fatalf("after restart: %q", got)
	}
	c.stop(true)
}

// Several lowers: the first is topmost.
func TestOverlayLowerOrder(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	top := filepath.Join(dir, "top")
	os.MkdirAll(filepath.Join(top, "etc"), 0o755)
	os.WriteFile(filepath.Join(top, "etc", "from-template"), []byte("from the top layer\n"), 0o644)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", top, "--lower", tpl, "--upper", filepath.Join(dir, "layer")}})
	c.mustStart()
	if got := c.mustSh("cat /etc/from-template"); got != "from the top layer\n" {
		t.Fatalf("lower order: %q", got)
	}
	c.stop(true)
	assertNoLoops(t, dir, "after stop")
}

// Start/stop cycles: no loop device of the test left at any lxc-stop return.
func TestOverlayCyclesLeaveNoLoopDevice(t *testing.T) {
	requireEnv(t)
	const cycles = 30
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl, "--upper", filepath.Join(dir, "layer")}})
	for i := 0; i < cycles; i++ {
		c.mustStart()
		if n := len(loopsUnder(dir)); n != 1 {
			t.Fatalf("cycle %d: %d loop devices for one template while running", i, n)
		}
		c.mustSh("echo " + strconv.Itoa(i) + " >> /root/cycles")
		c.stop(i%2 == 0)
		assertNoLoops(t, dir, "cycle "+strconv.Itoa(i)+" after lxc-stop")
	}
	c.mustStart()
	if got := strings.Count(c.mustSh("cat /root/cycles"), "\n"); got != cycles {
		t.Fatalf("%d of %d cycle writes persisted", got, cycles)
	}
	c.stop(true)
	t.Logf("%d start/stop cycles, 0 loop devices left after each", cycles)
}

// A bind mount of the container's mount namespace keeps the namespace
// alive after stop; the stop hook still frees the loop devices.
func TestOverlayNamespacePinnedByBindMount(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl, "--upper", filepath.Join(dir, "layer")}})
	c.mustStart()
	pinNamespace(t, c, dir)
	c.stop(false)
	assertNoLoops(t, dir, "lxc-stop returned with the namespace pinned by a bind mount")
	if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
}

// A process inside the namespace keeps the layers; the stop hook names it, and
// everything goes when it ends.
func TestOverlayNamespaceHeldByProcess(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl, "--upper", filepath.Join(dir, "layer")}})
	c.mustStart()
	holder, want := holdNamespace(t, c)
	c.stop(false)

	errs := strings.Join(c.hookLogLines("ERROR"), "\n")
	if !strings.Contains(errs, "still attached") || !strings.Contains(errs, want) {
		t.Fatalf("the stop hook did not name the holder %q:\n%s", want, errs)
	}
	holder.Process.Kill()
	holder.Wait()
	assertNoLoops(t, dir, "after the holder ended")

	// The next start and stop are clean and forget the leftover.
	c.mustStart()
	c.stop(true)
	assertNoLoops(t, dir, "after a restart")
}

// waitNS returns once pid has entered the mount namespace of target: nsenter
// execs sleep only after setns, so this is a bounded poll on a fact, not a
// sleep hiding a race.
func waitNS(t *testing.T, pid, target int) {
	t.Helper()
	want, _ := os.Readlink("/proc/" + strconv.Itoa(target) + "/ns/mnt")
	for i := 0; i < 500; i++ {
		got, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		if got == want && !strings.HasSuffix(exe, "nsenter") {
			return
		}
		sleepBriefly()
	}
	t.Fatalf("pid %d never entered the container's mount namespace", pid)
}

// The mount hook is the wrong place: refused with the advice to use pre-mount.
func TestOverlayMountHookRefused(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", hookTypes: []string{"mount"},
		args: []string{"--lower", tplDir, "--upper", filepath.Join(dir, "layer")}})
	if err := c.start(); err == nil {
		t.Fatal("container started with the hook on lxc.hook.mount")
	}
	errs := strings.Join(c.hookLogLines("ERROR"), "\n")
	if !strings.Contains(errs, "must run as lxc.hook.pre-mount") {
		t.Fatalf("no pre-mount advice in the LXC log:\n%s", errs)
	}
}

// Bad input refuses the start with one clear line in the LXC log, leaves
// no loop device and changes nothing.
func TestOverlayBadInputRefused(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	junk := filepath.Join(dir, "junk.squashfs")
	os.WriteFile(junk, []byte(strings.Repeat("not a filesystem ", 1000)), 0o644)
	junkSHA := fileSHA(t, junk)
	upper := filepath.Join(dir, "layer")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing lower", []string{"--lower", filepath.Join(dir, "nope.squashfs"), "--upper", upper}, `lower "` + filepath.Join(dir, "nope.squashfs") + `" does not exist`},
		{"junk lower", []string{"--lower", junk, "--upper", upper}, `lower "` + junk + `" is neither a directory nor a squashfs, erofs or ext4 image`},
		{"unknown flag", []string{"--lowr", tplDir, "--upper", upper}, "unknown flag --lowr"},
		{"relative upper", []string{"--lower", tplDir, "--upper", "layer"}, `--upper "layer" is not an absolute path`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: tc.args})
			if err := c.start(); err == nil {
				c.stop(true)
				t.Fatal("container started")
			}
			errs := c.hookLogLines("ERROR")
			if len(errs) == 0 || !strings.Contains(errs[0], tc.want) {
				t.Fatalf("want an ERROR line containing %q, got %q", tc.want, errs)
			}
			if !strings.Contains(errs[0], " "+c.name+" ") || !strings.Contains(errs[0], "pre-mount") {
				t.Fatalf("error line does not name the container and hook: %q", errs[0])
			}
			assertNoLoops(t, dir, "after a refused start")
		})
	}
	if fileSHA(t, junk) != junkSHA {
		t.Fatal("the refused lower file was changed")
	}
	if _, err := os.Stat(upper); err == nil {
		entries, _ := os.ReadDir(upper)
		if len(entries) > 0 {
			t.Logf("note: upper created by a refused start: %v", entries)
		}
	}
}

// With no lxc.log.file, "lxc-start -o FILE -l ERROR" is where a user looks:
// the hook's error lands there too.
func TestOverlayErrorReachesLxcStartLogFile(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	missing := filepath.Join(dir, "missing.squashfs")
	c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", noLogFile: true,
		args: []string{"--lower", missing, "--upper", filepath.Join(dir, "layer")}})
	logFile := filepath.Join(dir, "start.log")
	if out, err := c.lxc("lxc-start", "-o", logFile, "-l", "ERROR"); err == nil {
		c.stop(true)
		t.Fatalf("started: %s", out)
	}
	b, _ := os.ReadFile(logFile)
	want := "ERROR    overlay - pre-mount - lower \"" + missing + "\" does not exist"
	if !strings.Contains(string(b), want) {
		t.Fatalf("lxc-start -o log lacks %q:\n%s", want, b)
	}
}

// Without --upper (or --image), the layer lives in the container's own
// directory, beside its config.
func TestDefaultLayerBesideConfig(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	o := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl}})
	o.mustStart()
	o.mustSh("echo here > /root/h")
	o.stop(true)
	if b, err := os.ReadFile(filepath.Join(o.dir, "layer", "upper", "root", "h")); err != nil || string(b) != "here\n" {
		t.Fatalf("overlay default layer: %q %v", b, err)
	}
	l := newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", tpl, "--size", "32M"}})
	l.mustStart()
	l.stop(true)
	if fi, err := os.Stat(filepath.Join(l.dir, "layer.img")); err != nil || fi.Size() != 32<<20 {
		t.Fatalf("loopimg default image: %v %v", fi, err)
	}
	assertNoLoops(t, dir, "after stop")
}

// Templates as ext4 and erofs images are recognised by their magic and
// mounted read-only, like squashfs; the image files stay unchanged.
func TestOverlayExt4AndErofsTemplates(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	ext4 := filepath.Join(dir, "tpl.ext4") // names say nothing: the magic decides
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", tplDir, ext4, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs -d: %v %s", err, out)
	}
	needTools(t, "apt-get install erofs-utils", "mkfs.erofs")
	erofs := filepath.Join(dir, "tpl.img")
	if out, err := exec.Command("mkfs.erofs", erofs, tplDir).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs: %v %s", err, out)
	}
	images := []string{ext4, erofs}
	for _, img := range images {
		before := fileSHA(t, img)
		c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", img, "--upper", filepath.Join(dir, filepath.Base(img)+".layer")}})
		c.mustStart()
		if got := c.mustSh("cat /etc/from-template && echo w > /root/w && cat /root/w"); got != "template file\nw\n" {
			t.Fatalf("%s: %q", img, got)
		}
		c.stop(true)
		assertNoLoops(t, dir, "after stop with "+img)
		if fileSHA(t, img) != before {
			t.Fatalf("template image %s changed", img)
		}
	}
}
