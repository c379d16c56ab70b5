package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
)

// Unprivileged containers: root-started with lxc.idmap, mapped onto the
// suite's block of 65536 IDs: the first from 100000 up that nobody (root
// included) has in /etc/subuid, /etc/subgid, /etc/passwd or /etc/group
// (pre-start refuses a mapping onto another's IDs), 100000 on a host
// where no user has a subordinate range. Set by setupUnprivBlock.
var (
	unprivBase uint32
	unprivRoot string // unprivBase in decimal
	unprivMap  string // "u 0 BASE 65536"
	unprivGMap string
	// unprivRecord is the uid part of the mapping as a layer's record
	// names it.
	unprivRecord string
)

// unprivHookTypes are the keys init writes for an unprivileged container;
// legacyUnprivHookTypes those of earlier versions (still working).
var (
	unprivHookTypes       = []string{"pre-start", "stop"}
	legacyUnprivHookTypes = []string{"pre-start", "pre-mount", "stop", "post-stop"}
)

// setupUnprivBlock picks the suite's block. Where newuidmap and newgidmap
// are installed (package uidmap, which lxc Recommends), LXC maps a
// container's IDs with them even when root starts it, and they allow only
// the caller's own subordinate ranges: then root is given the block in
// /etc/subuid and /etc/subgid for the run (usermod), and release takes it
// back. Each run then has a block of its own (by its PID), so runs at the
// same time never add or remove each other's lines.
func setupUnprivBlock() (release func(), err error) {
	start, shadow := uint32(100000), newxidmapInstalled()
	if shadow {
		start += idmap.MinRange * uint32(1+os.Getpid()%4096)
	}
	unprivBase = freeTestBlock(start)
	unprivRoot = strconv.FormatUint(uint64(unprivBase), 10)
	unprivMap = fmt.Sprintf("u 0 %d 65536", unprivBase)
	unprivGMap = fmt.Sprintf("g 0 %d 65536", unprivBase)
	unprivRecord = fmt.Sprintf("u:0:%d:65536", unprivBase)
	if !shadow {
		return func() {}, nil
	}
	return reserveForRoot(unprivBase)
}

// newxidmapInstalled reports whether LXC will map IDs through newuidmap.
func newxidmapInstalled() bool {
	_, errU := exec.LookPath("newuidmap")
	_, errG := exec.LookPath("newgidmap")
	return errU == nil && errG == nil
}

// reserveForRoot gives root the 65536 IDs at start in the host's
// /etc/subuid and /etc/subgid (usermod refuses to change root, whose
// processes run), and returns what takes exactly that line out again.
func reserveForRoot(start uint32) (release func(), err error) {
	if err := idmap.AddRange(idmap.SystemFiles, "root", start, idmap.MinRange); err != nil {
		return nil, fmt.Errorf("giving root %d:%d in /etc/subuid and /etc/subgid (newuidmap is installed, so LXC needs root to have the range it maps): %w", start, idmap.MinRange, err)
	}
	return func() {
		if err := idmap.RemoveRange(idmap.SystemFiles, "root", start, idmap.MinRange); err != nil {
			fmt.Fprintf(os.Stderr, "taking root:%d:%d back out of /etc/subuid and /etc/subgid: %v\n", start, idmap.MinRange, err)
		}
	}, nil
}

// freeTestBlock is the first block of 65536 IDs from start up that nobody,
// root included, has in /etc/subuid, /etc/subgid, /etc/passwd or
// /etc/group.
func freeTestBlock(start uint32) uint32 {
	h, err := idmap.ReadHost(idmap.SystemFiles)
	if err != nil {
		return start
	}
	h.UIDs = append(h.UIDs, h.RootUIDs...)
	h.GIDs = append(h.GIDs, h.RootGIDs...)
	for b := uint64(start); b+idmap.MinRange-1 <= idmap.MaxID; b += idmap.MinRange {
		m := &idmap.Mapping{UID: []idmap.Range{{Inside: 0, Outside: uint32(b), Count: idmap.MinRange}}, GID: []idmap.Range{{Inside: 0, Outside: uint32(b), Count: idmap.MinRange}}}
		if len(h.Conflicts(m)) == 0 {
			return uint32(b)
		}
	}
	return start
}

// layerArgs are the hook arguments of a container over template tpl with
// its writable layer in dir: a directory for overlay (and AuFS), a 32M
// image for loopimg.
func layerArgs(hook, tpl, dir string) []string {
	if hook == "lxc-hook-loopimg" {
		return []string{"--lower", tpl, "--image", filepath.Join(dir, "delta.img"), "--size", "32M"}
	}
	return []string{"--lower", tpl, "--upper", filepath.Join(dir, "layer")}
}

// unprivCtr is a container with lxc.idmap and the hook on the four keys an
// unprivileged container needs. The container's root must reach its
// rootfs directory: the test run's root is 0700 otherwise.
func unprivCtr(t *testing.T, hook string, args ...string) *ctr {
	t.Helper()
	return unprivCtrOpts(t, ctrOpts{hook: hook, args: args})
}

func unprivCtrOpts(t *testing.T, o ctrOpts) *ctr {
	t.Helper()
	if err := os.Chmod(workRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	if o.hookTypes == nil {
		o.hookTypes = unprivHookTypes
	}
	o.extra = append(o.extra, "lxc.idmap = "+unprivMap, "lxc.idmap = "+unprivGMap)
	c := newCtr(t, o)
	closeToOthers(t, c.dir)
	return c
}

// closeToOthers gives dir the mode init gives an unprivileged container's
// directory: search by the container's root group only (its root is
// mounted in it on the host while it runs).
func closeToOthers(t *testing.T, dir string) {
	t.Helper()
	closeToOthersFor(t, dir, unprivBase)
}

// closeToOthersFor is closeToOthers for a container whose root's host gid
// is gid.
func closeToOthersFor(t *testing.T, dir string, gid uint32) {
	t.Helper()
	if err := os.Chown(dir, 0, int(gid)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o710); err != nil {
		t.Fatal(err)
	}
}

func ownerOf(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// hostOwnerInImage reads a file's owner inside an ext4 image with debugfs,
// without mounting it.
func hostOwnerInImage(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "stat "+path, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v %s", err, out)
	}
	for _, f := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(f), "User:"); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("debugfs stat %s: no owner in %s", path, out)
	return ""
}

// The checks, for overlay and loopimg: the mapping inside is not
// the identity; the template's files are root's inside; what the
// container writes is its root's inside and the mapped root's on the host,
// persists over a restart, deletions stay; the template file is unchanged
// (content and owner); no loop device and no runtime state after a stop;
// loopimg keeps its cap.
func TestUnprivilegedStartsFromRootOwnedTemplate(t *testing.T) {
	requireEnv(t)
	for _, tc := range []struct {
		name, hook string
		version    int
		dirLower   bool // no --lower: the extracted template in lxc.rootfs.path
	}{
		{name: "overlay", hook: "lxc-hook-overlay"},
		{name: "overlay/hook.version=1", hook: "lxc-hook-overlay", version: 1},
		{name: "overlay/directory-template", hook: "lxc-hook-overlay", dirLower: true},
		{name: "loopimg", hook: "lxc-hook-loopimg"},
		{name: "aufs-fallback", hook: "lxc-hook-aufs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hook := tc.hook
			dir := testDir(t)
			tpl := filepath.Join(dir, "tpl.squashfs")
			copyFile(t, tplSquash, tpl)
			var rootfs string
			if tc.dirLower {
				tpl = filepath.Join(dir, "rootfs")
				if out, err := exec.Command("cp", "-a", tplDir, tpl).CombinedOutput(); err != nil {
					t.Fatalf("cp: %v %s", err, out)
				}
				rootfs = tpl
				// The container's root must reach its rootfs directory,
				// no other user.
				closeToOthers(t, dir)
			}
			sum := func() string {
				if tc.dirLower {
					return treeSHA(t, tpl)
				}
				return fileSHA(t, tpl)
			}
			before := sum()
			var args []string
			img, upper := filepath.Join(dir, "delta.img"), filepath.Join(dir, "layer")
			switch {
			case hook == "lxc-hook-loopimg":
				args = []string{"--lower", tpl, "--image", img, "--size", "32M"}
			case tc.dirLower:
				args = []string{"--upper", upper}
			default:
				args = []string{"--lower", tpl, "--upper", upper}
			}
			if hook == "lxc-hook-aufs" {
				if kernelHasAufs() {
					t.Skip("this kernel has AuFS: the fallback to overlayfs is not taken")
				}
				args = append(args, "--fallback=overlay")
			}
			c := unprivCtrOpts(t, ctrOpts{hook: hook, args: args, hookVersion: tc.version, rootfs: rootfs})

			c.mustStart()
			if m := c.mustSh("cat /proc/self/uid_map"); !strings.Contains(m, unprivRoot) {
				t.Fatalf("uid_map inside is %q, want the container's mapping", m)
			}
			if got := c.mustSh("stat -c %u:%g /etc/from-template /bin/busybox"); got != "0:0\n0:0\n" {
				t.Fatalf("template files inside owned by %q, want root", got)
			}
			c.mustSh("echo persisted > /root/note && mkdir -p /srv/new-dir && rm /etc/from-template && sync")
			if got := c.mustSh("stat -c %u:%g /root/note /srv/new-dir"); got != "0:0\n0:0\n" {
				t.Fatalf("new files inside owned by %q, want root", got)
			}
			if hook == "lxc-hook-loopimg" {
				if out, err := c.sh("dd if=/dev/zero of=/big bs=1M count=64"); err == nil || !strings.Contains(out, "No space left") {
					t.Fatalf("writing 64M into a 32M cap did not hit ENOSPC: %v %q", err, out)
				}
				c.mustSh("rm /big && sync")
			}
			c.stop(false)
			assertNoLoops(t, dir, "after lxc-stop")
			if run := c.runDir(); exists(run) {
				t.Fatalf("runtime directory %s left after a clean stop", run)
			}

			// On the host the container's files carry its mapped IDs.
			if hook == "lxc-hook-loopimg" {
				if got := hostOwnerInImage(t, img, "upper/root/note"); got != unprivRoot {
					t.Fatalf("new file owned by %s in the image, want %s", got, unprivRoot)
				}
			} else {
				if u, g := ownerOf(t, filepath.Join(upper, "upper", "root", "note")); u != unprivBase || g != unprivBase {
					t.Fatalf("new file owned by %d:%d on the host, want %d:%d", u, g, unprivBase, unprivBase)
				}
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

			if after := sum(); after != before {
				t.Fatal("the template changed")
			}
			if u, g := ownerOf(t, tpl); u != 0 || g != 0 {
				t.Fatalf("template owned by %d:%d after the runs, want 0:0", u, g)
			}
			if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
				t.Fatalf("hook logged errors on a clean run: %v", errs)
			}
			if isMountpoint(t, c.rootfs) {
				t.Fatalf("the root is still mounted on %s on the host after the stop", c.rootfs)
			}
		})
	}
}

// isMountpoint reports whether something is mounted on p in this (the
// host's) mount namespace.
func isMountpoint(t *testing.T, p string) bool {
	t.Helper()
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, 0, &st); err != nil {
		t.Fatal(err)
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}

// An unprivileged container's root mount is locked to its namespace by the
// kernel (MNT_LOCKED), so umount(2) cannot take it out; the stop hook
// pivots the namespace into an empty tmpfs, which moves the lock, and
// detaches it. So with the namespace pinned by a bind mount, as for a
// privileged container, no loop device is left when lxc-stop returns.
func TestUnprivilegedPinnedNamespaceLeaksNothing(t *testing.T) {
	requireEnv(t)
	for _, hook := range []string{"lxc-hook-loopimg", "lxc-hook-overlay"} {
		t.Run(hook, func(t *testing.T) {
			dir := testDir(t)
			tpl := filepath.Join(dir, "tpl.squashfs")
			copyFile(t, tplSquash, tpl)
			args := layerArgs(hook, tpl, dir)
			c := unprivCtr(t, hook, args...)
			for i := 0; i < 3; i++ {
				c.mustStart()
				c.mustSh(fmt.Sprintf("echo %d > /root/round && sync", i))
				pinNamespace(t, c, dir)
				c.stop(false)
				assertNoLoops(t, dir, fmt.Sprintf("round %d: at lxc-stop return with the namespace pinned", i))
				if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
					t.Fatalf("round %d: %v", i, errs)
				}
				if out, err := exec.Command("umount", filepath.Join(dir, "nspin")).CombinedOutput(); err != nil {
					t.Fatalf("umount pin: %v %s", err, out)
				}
			}
			c.mustStart()
			if got := c.mustSh("cat /root/round"); got != "2\n" {
				t.Fatalf("after the pinned stops: %q", got)
			}
			c.stop(false)
			assertNoLoops(t, dir, "after the last stop")
		})
	}
}

// waitLog waits, bounded, for a hook line containing all of want: after a
// failed start, lxc-start returns before LXC's stop hook has run.
func waitLog(t *testing.T, c *ctr, level string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range c.hookLogLines(level) {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(l, w)
			}
			if ok {
				return l
			}
		}
		sleepBriefly()
	}
	t.Fatalf("no %s line with %q in the LXC log:\n%s", level, want, lastLines(c.log(), 20))
	return ""
}

// Refusals reach the container's LXC log (lxc.log.level = INFO): a missing
// lower, a missing pre-start line, a layer written by a privileged
// container, and the reverse.
func TestUnprivilegedRefusalsInLXCLog(t *testing.T) {
	requireEnv(t)
	t.Run("missing lower", func(t *testing.T) {
		dir := testDir(t)
		missing := filepath.Join(dir, "missing.squashfs")
		c := unprivCtr(t, "lxc-hook-overlay", "--lower", missing, "--upper", filepath.Join(dir, "layer"))
		if err := c.start(); err == nil {
			t.Fatal("started without its lower")
		}
		waitLog(t, c, "ERROR", "pre-start", missing, "does not exist")
		assertNoLoops(t, dir, "after the refused start")
		if isMountpoint(t, c.rootfs) {
			t.Fatal("a refused start left something mounted on the rootfs directory")
		}
		if run := c.runDir(); exists(run) {
			t.Fatalf("runtime directory %s left after a refused start", run)
		}
	})
	t.Run("template filesystem without idmapped mounts", func(t *testing.T) {
		dir := testDir(t)
		tpl := filepath.Join(dir, "ramfs")
		os.Mkdir(tpl, 0o755)
		if err := unix.Mount("none", tpl, "ramfs", 0, ""); err != nil {
			t.Fatalf("no ramfs to test with: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(tpl, unix.MNT_DETACH) })
		if out, err := exec.Command("cp", "-a", tplDir+"/.", tpl).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		c := unprivCtr(t, "lxc-hook-overlay", "--lower", tpl, "--upper", filepath.Join(dir, "layer"))
		if err := c.start(); err == nil {
			t.Fatal("started over a lower the kernel cannot idmap")
		}
		waitLog(t, c, "ERROR", "pre-start", tpl, "idmapped mount of its ramfs filesystem", "Linux 5.12")
	})
	t.Run("rootfs out of reach", func(t *testing.T) {
		dir := testDir(t) // 0700
		rootfs := filepath.Join(dir, "rootfs")
		os.Mkdir(rootfs, 0o755)
		c := unprivCtrOpts(t, ctrOpts{hook: "lxc-hook-overlay", rootfs: rootfs, args: []string{"--lower", tplSquash, "--upper", filepath.Join(dir, "layer")}})
		if err := c.start(); err == nil {
			t.Fatal("started with a rootfs its root cannot reach")
		}
		waitLog(t, c, "ERROR", "pre-start", "out of reach of the container's root", "chgrp "+unprivRoot+" "+dir)
	})
	t.Run("no pre-start line", func(t *testing.T) {
		dir := testDir(t)
		if err := os.Chmod(workRoot, 0o711); err != nil {
			t.Fatal(err)
		}
		c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tplSquash, "--upper", filepath.Join(dir, "layer")},
			extra: []string{"lxc.idmap = " + unprivMap, "lxc.idmap = " + unprivGMap}})
		if err := c.start(); err == nil {
			t.Fatal("an unprivileged container started without the pre-start hook")
		}
		waitLog(t, c, "ERROR", "lxc.hook.pre-start")
	})
	// One container, its config switched between privileged and
	// unprivileged (the layer belongs to that config).
	privOpts := func(upper string) ctrOpts {
		return ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tplSquash, "--upper", upper}}
	}
	unprivOpts := func(upper string) ctrOpts {
		o := privOpts(upper)
		o.hookTypes = unprivHookTypes
		o.extra = []string{"lxc.idmap = " + unprivMap, "lxc.idmap = " + unprivGMap}
		return o
	}
	t.Run("privileged layer started unprivileged", func(t *testing.T) {
		dir := testDir(t)
		upper := filepath.Join(dir, "layer")
		c := newCtr(t, privOpts(upper))
		c.mustStart()
		c.mustSh("echo mine > /root/privileged && sync")
		c.stop(false)
		if err := os.Chmod(workRoot, 0o711); err != nil {
			t.Fatal(err)
		}
		closeToOthers(t, c.dir)
		c.writeConfig(unprivOpts(upper))
		if err := c.start(); err == nil {
			t.Fatal("a privileged container's layer started unprivileged")
		}
		waitLog(t, c, "ERROR", "written by a privileged container", "start it privileged")
		if u, _ := ownerOf(t, filepath.Join(upper, "upper", "root", "privileged")); u != 0 {
			t.Fatalf("the refused start changed the layer's owner to %d", u)
		}
	})
	t.Run("unprivileged layer started privileged", func(t *testing.T) {
		dir := testDir(t)
		upper := filepath.Join(dir, "layer")
		c := unprivCtrOpts(t, privOpts(upper))
		c.mustStart()
		c.stop(false)
		c.writeConfig(privOpts(upper))
		if err := c.start(); err == nil {
			t.Fatal("an unprivileged container's layer started privileged")
		}
		waitLog(t, c, "ERROR", "written by an unprivileged container", unprivRecord)
	})
}

// runWithSubIDs runs a command with /etc/subuid and /etc/subgid replaced
// by the given contents, in a private mount namespace of a thread of this
// test (the command inherits it), so the host's files are not touched.
func runWithSubIDs(t *testing.T, subuid, subgid string, name string, args ...string) (string, error) {
	t.Helper()
	dir := testDir(t)
	fake := map[string]string{"/etc/subuid": subuid, "/etc/subgid": subgid}
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			done <- result{err: err}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- result{err: err}
			return
		}
		for target, content := range fake {
			src := filepath.Join(dir, filepath.Base(target))
			os.WriteFile(src, []byte(content), 0o644)
			if !exists(target) {
				done <- result{err: fmt.Errorf("%s does not exist to bind over", target)}
				return
			}
			if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
				done <- result{err: err}
				return
			}
		}
		cmd := exec.Command(name, args...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		out, err := cmd.CombinedOutput()
		done <- result{string(out), err}
	}()
	r := <-done
	return r.out, r.err
}

// init --unprivileged writes lxc.idmap from root's subordinate range and
// the pre-start line; the container starts unprivileged and status shows
// it. (Where root has no range, init gives it one: see
// TestIDsInitGivesRootARangeNoUserHas.)
func TestUnprivilegedInit(t *testing.T) {
	requireEnv(t)
	if err := os.Chmod(workRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	lxcpath := filepath.Join(workRoot, "lxc")
	os.MkdirAll(lxcpath, 0o755)
	defaults := filepath.Join(workRoot, "default.conf")
	os.WriteFile(defaults, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"), 0o644)
	bin := filepath.Join(binDir, "lxc-hook-loopimg")

	name := uniqueName("uinit")
	rootLine := "root:" + unprivRoot + ":65536\n"
	out, err := runWithSubIDs(t, rootLine, rootLine, bin, "init", name, "--template", tplSquash, "-P", lxcpath, "--default-config", defaults, "--unprivileged", "--size", "32M")
	if err != nil {
		t.Fatalf("init --unprivileged: %v %s", err, out)
	}
	c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name), logFile: filepath.Join(lxcpath, name, name+".log")}
	t.Cleanup(func() {
		if c.state() != "STOPPED" {
			exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
		}
		if t.Failed() {
			t.Logf("LXC log of %s:\n%s", c.name, lastLines(c.log(), 30))
		}
	})
	cfg, _ := os.ReadFile(filepath.Join(c.dir, "config"))
	for _, unwanted := range []string{"lxc.hook.pre-mount", "lxc.hook.post-stop"} {
		if strings.Contains(string(cfg), unwanted) {
			t.Fatalf("init wrote %s for an unprivileged container (one hook process per start and per stop):\n%s", unwanted, cfg)
		}
	}
	if u, g := ownerOf(t, c.dir); u != 0 || g != unprivBase {
		t.Fatalf("the container's directory is %d:%d, want 0:%d (search by the container's root only)", u, g, unprivBase)
	}
	if fi, _ := os.Stat(c.dir); fi.Mode().Perm() != 0o710 {
		t.Fatalf("the container's directory has mode %o, want 0710", fi.Mode().Perm())
	}
	for _, want := range []string{"lxc.idmap = " + unprivMap, "lxc.idmap = " + unprivGMap, "lxc.hook.pre-start = " + bin, "lxc.hook.stop = " + bin} {
		if !strings.Contains(string(cfg), want+"\n") && !strings.Contains(string(cfg), want+" ") {
			t.Fatalf("config lacks %q:\n%s", want, cfg)
		}
	}
	f, _ := os.OpenFile(filepath.Join(c.dir, "config"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("lxc.log.file = " + c.logFile + "\nlxc.log.level = INFO\n")
	f.Close()

	c.mustStart()
	if m := c.mustSh("cat /proc/self/uid_map"); !strings.Contains(m, unprivRoot) {
		t.Fatalf("uid_map inside is %q", m)
	}
	js, err := admin(t, "lxc-hook-loopimg", "status", name, "-P", lxcpath, "--json")
	if err != nil || !strings.Contains(js, `"unprivileged": true`) || !strings.Contains(js, `"`+unprivMap+`"`) || !strings.Contains(js, `"error": ""`) {
		t.Fatalf("status --json: %v %s", err, js)
	}
	txt, _ := admin(t, "lxc-hook-loopimg", "status", name, "-P", lxcpath)
	if !strings.Contains(txt, "unprivileged, "+unprivMap+", "+unprivGMap) {
		t.Fatalf("status: %s", txt)
	}
	c.stop(false)
	assertNoLoops(t, c.dir, "after lxc-stop")
}

// runHook runs the hook as LXC would for hook type typ (lxc.hook.version 1).
func runHook(t *testing.T, c *ctr, hook, typ string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, hook), args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LXC_HOOK_VERSION=1", "LXC_HOOK_TYPE=" + typ,
		"LXC_NAME=" + c.name, "LXC_CONFIG_FILE=" + filepath.Join(c.dir, "config"), "LXC_ROOTFS_PATH=dir:" + c.rootfs}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A pre-start whose container never came (LXC's monitor killed after
// pre-start: no stop hook ran) leaves the root attached on the rootfs
// directory in the host's namespace, holding template and image. The next
// start detaches that very mount (by its unique id) and starts; release
// detaches it too; something else mounted on the rootfs directory is
// refused, never detached.
func TestUnprivilegedPreStartWithoutStart(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	args := []string{"--lower", tpl, "--image", filepath.Join(dir, "delta.img"), "--size", "32M"}
	c := unprivCtr(t, "lxc-hook-loopimg", args...)

	preStart := func() {
		t.Helper()
		if out, err := runHook(t, c, "lxc-hook-loopimg", "pre-start", args...); err != nil {
			t.Fatalf("pre-start by hand: %v %s", err, out)
		}
		if !isMountpoint(t, c.rootfs) || len(loopsUnder(dir)) != 2 {
			t.Fatalf("after pre-start: mounted on rootfs %v, loops %v; want the root there holding template and image", isMountpoint(t, c.rootfs), loopsUnder(dir))
		}
	}
	preStart()
	c.mustStart()
	waitLog(t, c, "WARN", "was still mounted on "+c.rootfs)
	c.mustSh("echo ok > /root/ok && sync")
	c.stop(false)
	assertNoLoops(t, dir, "after lxc-stop")
	if isMountpoint(t, c.rootfs) {
		t.Fatal("the root is still mounted on the host after the stop")
	}

	preStart()
	if out, _ := admin(t, "lxc-hook-loopimg", "status", c.name, "-P", c.lxcpath); !strings.Contains(out, "still mounted on "+c.rootfs) {
		t.Fatalf("status does not say the root is left on the host:\n%s", out)
	}
	out, err := admin(t, "lxc-hook-loopimg", "release", c.name, "-P", c.lxcpath)
	if err != nil || !strings.Contains(out, "detached the container's root from "+c.rootfs) {
		t.Fatalf("release: %v %s", err, out)
	}
	assertNoLoops(t, dir, "after release")
	if isMountpoint(t, c.rootfs) || exists(c.runDir()) {
		t.Fatalf("after release: mounted %v, runtime directory %v", isMountpoint(t, c.rootfs), exists(c.runDir()))
	}

	if err := unix.Mount("tmpfs", c.rootfs, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(c.rootfs, unix.MNT_DETACH)
	if err := c.start(); err == nil {
		t.Fatal("started over a foreign mount on the rootfs directory")
	}
	waitLog(t, c, "ERROR", "has something mounted on it", "umount "+c.rootfs)
	var sfs unix.Statfs_t
	if err := unix.Statfs(c.rootfs, &sfs); err != nil || sfs.Type != unix.TMPFS_MAGIC {
		t.Fatalf("the foreign tmpfs on the rootfs directory is gone (%v): the hook detached what it did not mount", err)
	}
	assertNoLoops(t, dir, "after the refused start")
}

// kill -9 of the LXC monitor, then of the container's init: no hook runs
// at the end; the next start detaches the root left on the host, cleans
// up and starts, with the data.
func TestUnprivilegedMonitorKilled(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	c := unprivCtr(t, "lxc-hook-loopimg", "--lower", tpl, "--image", filepath.Join(dir, "delta.img"), "--size", "32M")
	c.mustStart()
	c.mustSh("echo before > /root/before && sync")
	mon, init := monitorPID(t, c), c.pid()
	syscall.Kill(mon, syscall.SIGKILL)
	waitGone(t, mon, "the LXC monitor after kill -9")
	syscall.Kill(init, syscall.SIGKILL)
	waitGone(t, init, "the container's init after kill -9")
	if c.state() == "RUNNING" {
		t.Fatal("still RUNNING")
	}
	// No stop hook ran: the root pre-start attached on the host for LXC
	// stays, holding the devices, until the next start (or release)
	// detaches it.
	if !isMountpoint(t, c.rootfs) {
		t.Fatal("the root is no longer mounted on the host: nothing should have detached it")
	}
	c.mustStart()
	waitLog(t, c, "WARN", "was still mounted on "+c.rootfs)
	if got := c.mustSh("cat /root/before"); got != "before\n" {
		t.Fatalf("after the kill: %q", got)
	}
	c.stop(false)
	assertNoLoops(t, dir, "after lxc-stop")
	if run := c.runDir(); exists(run) {
		t.Fatalf("runtime directory %s left", run)
	}
}

// A process kept in an unprivileged container's mount namespace: the stop
// hook's pivot gives it the empty root too, so its devices go unless it
// holds something of the old root open (its working directory here, as
// nsenter keeps the container's); then the stop hook names it, and they go
// when it does.
func TestUnprivilegedNamespaceHeldByProcessNamed(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	c := unprivCtr(t, "lxc-hook-loopimg", "--lower", tpl, "--image", filepath.Join(dir, "delta.img"), "--size", "32M")
	c.mustStart()
	holder, who := holdNamespace(t, c)
	c.stop(false)
	if len(loopsUnder(dir)) == 0 {
		t.Fatal("the holder kept nothing of the old root (its devices went at the stop): the case of a holder to name was not produced")
	}
	waitLog(t, c, "ERROR", "stop", who)
	holder.Process.Kill()
	holder.Wait()
	waitNoLoops(t, dir, "after the holder ended")
	c.mustStart()
	c.stop(false)
	assertNoLoops(t, dir, "after a second start and stop")
}

// Unprivileged containers started at once share one template device, each
// gets its own root, attached by its own pre-start; all stop clean.
func TestUnprivilegedParallelStartsShareTemplate(t *testing.T) {
	requireEnv(t)
	const n = 8
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	cs := make([]*ctr, n)
	for i := range cs {
		cs[i] = unprivCtr(t, "lxc-hook-loopimg", "--lower", tpl, "--image", filepath.Join(dir, fmt.Sprintf("img%d.img", i)), "--size", "32M")
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func(i int, c *ctr) {
			defer wg.Done()
			errs[i] = c.start()
		}(i, c)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("container %d: %v\n%s", i, err, strings.Join(cs[i].hookLogLines("ERROR"), "\n"))
		}
	}
	templates := 0
	for _, l := range loopsUnder(dir) {
		if strings.Contains(l, "tpl.squashfs") {
			templates++
		}
	}
	if templates != 1 {
		t.Fatalf("%d template devices for %d containers, want 1: %v", templates, n, loopsUnder(dir))
	}
	for i, c := range cs {
		c.mustSh(fmt.Sprintf("echo %d > /root/me", i))
		if got := c.mustSh("stat -c %u /etc/from-template"); got != "0\n" {
			t.Fatalf("container %d: template file owned by %q inside", i, got)
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
}

// ext4 and erofs template images serve unprivileged containers too: their
// files are root's inside, the image is unchanged.
func TestUnprivilegedExt4AndErofsTemplates(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	ext4 := filepath.Join(dir, "tpl.ext4")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", tplDir, ext4, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs -d: %v %s", err, out)
	}
	needTools(t, "apt-get install erofs-utils", "mkfs.erofs")
	erofs := filepath.Join(dir, "tpl.erofs")
	if out, err := exec.Command("mkfs.erofs", erofs, tplDir).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs: %v %s", err, out)
	}
	images := []string{ext4, erofs}
	for _, img := range images {
		before := fileSHA(t, img)
		c := unprivCtr(t, "lxc-hook-overlay", "--lower", img, "--upper", filepath.Join(dir, filepath.Base(img)+".layer"))
		c.mustStart()
		if got := c.mustSh("stat -c %u:%g /etc/from-template && echo w > /root/w && stat -c %u /root/w"); got != "0:0\n0\n" {
			t.Fatalf("%s: %q", img, got)
		}
		c.stop(true)
		assertNoLoops(t, dir, "after stop with "+img)
		if fileSHA(t, img) != before {
			t.Fatalf("template image %s changed", img)
		}
	}
}

// --ephemeral serves unprivileged containers too: a new layer at every
// start, owned by the container's root, nothing left after the stop.
func TestUnprivilegedEphemeral(t *testing.T) {
	requireEnv(t)
	for _, hook := range []string{"lxc-hook-overlay", "lxc-hook-loopimg"} {
		t.Run(hook, func(t *testing.T) {
			dir := testDir(t)
			tpl := filepath.Join(dir, "tpl.squashfs")
			copyFile(t, tplSquash, tpl)
			args := []string{"--lower", tpl, "--ephemeral"}
			if hook == "lxc-hook-loopimg" {
				args = append(args, "--size", "32M")
			}
			c := unprivCtr(t, hook, args...)
			c.mustStart()
			if got := c.mustSh("echo x > /root/x && stat -c %u /root/x /etc/from-template"); got != "0\n0\n" {
				t.Fatalf("owners inside: %q", got)
			}
			c.stop(false)
			assertNoLoops(t, dir, "after lxc-stop")
			c.mustStart()
			if out, err := c.sh("cat /root/x"); err == nil {
				t.Fatalf("an ephemeral layer kept a write: %q", out)
			}
			c.stop(false)
			assertNoLoops(t, dir, "after the second stop")
			if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
		})
	}
}

// The claim on an unprivileged container's layer names LXC's monitor (the
// container's namespace does not exist at pre-start): after a crash (no
// stop hook) it is stale once the root left on the host is detached, and
// another container given the layer takes it over, as for a privileged
// container.
func TestUnprivilegedStaleClaimTakenOver(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	upper := filepath.Join(dir, "layer")
	args := []string{"--lower", tplSquash, "--upper", upper}
	a := unprivCtrOpts(t, ctrOpts{hook: "lxc-hook-overlay", args: args})
	b := unprivCtrOpts(t, ctrOpts{hook: "lxc-hook-overlay", args: args})
	a.mustStart()
	a.mustSh("echo from-a > /root/a && sync")
	if err := b.start(); err == nil {
		b.stop(true)
		t.Fatal("a second container started on the same --upper while A runs")
	}
	// B's refusal names A's live claim; B took it over (it judged the
	// claim of A's gone pre-start namespace stale) and its undo removed it.
	if line := strings.Join(b.hookLogLines("ERROR"), "\n"); !strings.Contains(line, "which is running") {
		t.Fatalf("B's refusal is not for A's live claim:\n%s", line)
	}
	if cl, _ := os.ReadFile(filepath.Join(upper, "lxc-hook-in-use")); !strings.Contains(string(cl), a.name) {
		t.Fatalf("A's claim is gone after B's refused start: %q", cl)
	}
	mon := monitorPID(t, a)
	initPID := a.pid()
	syscall.Kill(mon, syscall.SIGKILL)
	for i := 0; i < 1000 && syscall.Kill(initPID, 0) == nil; i++ {
		sleepBriefly()
	}
	if !exists(filepath.Join(upper, "lxc-hook-in-use")) {
		t.Fatal("no claim left by the crash: the test does not test the takeover")
	}
	// A moves to a layer of its own (the owner record then lets B have
	// this one): what is left to decide is the stale claim.
	cfg := filepath.Join(a.dir, "config")
	conf, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.ReplaceAll(string(conf), "--upper "+upper, "--upper "+upper+"-a")), 0o644)
	// But A's root, with this layer in it, is still mounted on the host
	// (pre-start attached it there; no stop hook ran): B is refused, with
	// the remedy, until it is detached.
	if err := b.start(); err == nil {
		b.stop(true)
		t.Fatal("B started on the layer while the crashed A's root still had it mounted")
	}
	if line := strings.Join(b.hookLogLines("ERROR"), "\n"); !strings.Contains(line, "still mounted on "+a.rootfs) || !strings.Contains(line, "release "+a.name) {
		t.Fatalf("B's refusal does not name A's mounted root and the remedy:\n%s", line)
	}
	if out, err := admin(t, "lxc-hook-overlay", "release", a.name, "-P", a.lxcpath); err != nil {
		t.Fatalf("release %s: %v %s", a.name, err, out)
	}
	if err := b.start(); err != nil {
		t.Fatalf("the stale claim of a crashed unprivileged container blocks the layer: %v\n%s", err, strings.Join(b.hookLogLines("ERROR"), "\n"))
	}
	if got := b.mustSh("cat /root/a"); got != "from-a\n" {
		t.Fatalf("B does not see A's layer: %q", got)
	}
	b.stop(false)
	if exists(filepath.Join(upper, "lxc-hook-in-use")) {
		t.Fatal("the claim is left after B's stop")
	}
}

// mountedIn reports whether the mount namespace of pid has something
// mounted on path.
func mountedIn(t *testing.T, pid int, path string) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// inNewMountNS starts a process that only waits, in a new mount namespace
// with the given propagation (as unshare(1) sets it: systemd's services get
// "slave", a shell's `unshare -m` "private").
func inNewMountNS(t *testing.T, propagation string) int {
	t.Helper()
	cmd := exec.Command("unshare", "-m", "--propagation", propagation, "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Its namespace exists once it runs sleep (unshare execs it).
	for i := 0; i < 500; i++ {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); strings.TrimSpace(string(b)) == "sleep" {
			return cmd.Process.Pid
		}
		sleepBriefly()
	}
	t.Fatal("unshare never ran sleep")
	return 0
}

// An unprivileged container's root is attached on the host, where LXC
// takes it. On a host whose mounts are shared (systemd makes "/" shared),
// mount namespaces made as slaves (systemd's services) before the start or
// while it runs get a copy of it; the stop hook's unmount reaches those
// copies too, so nothing of the container is left anywhere when lxc-stop
// returns. A namespace that cut itself off (private: `unshare -m` by hand)
// keeps its copy, and with it the devices: the stop hook names it. The CI
// machine's mounts are private, so the test makes the container's
// directory a shared mount of its own.
func TestUnprivilegedRootPropagation(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	c := unprivCtr(t, "lxc-hook-loopimg", "--lower", tpl, "--image", filepath.Join(dir, "delta.img"), "--size", "32M")
	if err := unix.Mount(c.dir, c.dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(c.dir, unix.MNT_DETACH) })
	if err := unix.Mount("", c.dir, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}

	before := inNewMountNS(t, "slave")
	c.mustStart()
	during := inNewMountNS(t, "slave")
	for _, pid := range []int{before, during} {
		if !mountedIn(t, pid, c.rootfs) {
			t.Fatalf("the slave namespace of pid %d has no copy of the root: the test tests nothing", pid)
		}
	}
	c.mustSh("echo shared > /root/f && sync")
	c.stop(false)
	for _, pid := range []int{before, during} {
		if mountedIn(t, pid, c.rootfs) {
			t.Fatalf("the stop left the container's root in the slave namespace of pid %d", pid)
		}
	}
	assertNoLoops(t, dir, "at lxc-stop return, with slave namespaces made before and during the run")
	if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}

	c.mustStart()
	private := inNewMountNS(t, "private")
	c.stop(false)
	if !mountedIn(t, private, c.rootfs) {
		t.Fatal("the private namespace lost its copy: the test does not test what it names")
	}
	waitLog(t, c, "ERROR", "still attached", fmt.Sprintf("pid %d", private))
	syscall.Kill(private, syscall.SIGKILL)
	waitNoLoops(t, dir, "after the private namespace's process ended")
	c.mustStart()
	if got := c.mustSh("cat /root/f"); got != "shared\n" {
		t.Fatalf("after the restarts: %q", got)
	}
	c.stop(false)
	assertNoLoops(t, dir, "after the last stop")
}

// Configs written by earlier versions (the hook on pre-mount, stop and
// post-stop; unprivileged: also pre-start) start and stop as before: the
// redundant hooks return at once, and nothing is left.
func TestLegacyHookLines(t *testing.T) {
	requireEnv(t)
	for _, tc := range []struct {
		name, hook string
		unpriv     bool
	}{
		{"overlay", "lxc-hook-overlay", false},
		{"loopimg", "lxc-hook-loopimg", false},
		{"overlay-unprivileged", "lxc-hook-overlay", true},
		{"loopimg-unprivileged", "lxc-hook-loopimg", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			tpl := filepath.Join(dir, "tpl.squashfs")
			copyFile(t, tplSquash, tpl)
			args := layerArgs(tc.hook, tpl, dir)
			var c *ctr
			if tc.unpriv {
				c = unprivCtrOpts(t, ctrOpts{hook: tc.hook, args: args, hookTypes: legacyUnprivHookTypes})
			} else {
				c = newCtr(t, ctrOpts{hook: tc.hook, args: args, hookTypes: []string{"pre-mount", "stop", "post-stop"}})
			}
			for i := 0; i < 2; i++ {
				c.mustStart()
				c.mustSh(fmt.Sprintf("echo %d > /root/n && sync", i))
				c.stop(i == 1)
				assertNoLoops(t, dir, fmt.Sprintf("round %d", i))
				if exists(c.runDir()) {
					t.Fatalf("round %d: runtime directory left", i)
				}
			}
			c.mustStart()
			if got := c.mustSh("cat /root/n"); got != "1\n" {
				t.Fatalf("after the restarts: %q", got)
			}
			c.stop(false)
			if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
				t.Fatalf("errors with the legacy lines: %v", errs)
			}
			// status says migrate would help; migrate makes it so.
			if out, _ := admin(t, tc.hook, "status", c.name, "-P", c.lxcpath); !strings.Contains(out, "migrate "+c.name) || !strings.Contains(out, "lxc.hook.post-stop removed") {
				t.Fatalf("status does not suggest migrate:\n%s", out)
			}
			if out, err := admin(t, tc.hook, "migrate", c.name, "-P", c.lxcpath); err != nil || !strings.Contains(out, "migrated") {
				t.Fatalf("migrate: %v %s", err, out)
			}
			if out, _ := admin(t, tc.hook, "status", c.name, "-P", c.lxcpath, "--json"); !strings.Contains(out, `"migrate": ""`) {
				t.Fatalf("status after migrate:\n%s", out)
			}
			c.mustStart()
			if got := c.mustSh("cat /root/n"); got != "1\n" {
				t.Fatalf("after migrate: %q", got)
			}
			c.stop(false)
			assertNoLoops(t, dir, "after migrate")
		})
	}
}
