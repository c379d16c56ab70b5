package test

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
)

var (
	skipReason string
	workRoot   string // everything of this test run lives below it
	binDir     string
	tplDir     string // the extracted busybox template
	tplSquash  string // the same as squashfs
)

func TestMain(m *testing.M) {
	if code, ran := runHelper(); ran {
		os.Exit(code)
	}
	code := func() int {
		if skipReason = prerequisites(); skipReason != "" {
			if os.Geteuid() == 0 {
				// As root the tests must run: scripts/deps.sh installs
				// what they need, and a suite that skipped would leave CI
				// green with no hook start or stop tested.
				fmt.Fprintf(os.Stderr, "FAIL: the real-LXC tests cannot run as root here: %s\n", skipReason)
				return 1
			}
			return m.Run() // each test skips, naming the reason
		}
		var err error
		workRoot, err = os.MkdirTemp("", "lxc-hooks-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanupRoot(workRoot)
		defer unpinNewUserNS(pinnedUserNS())
		binDir = filepath.Join(workRoot, "bin")
		if err := buildBinaries(binDir); err != nil {
			fmt.Fprintln(os.Stderr, "building the hooks:", err)
			return 1
		}
		tplDir = filepath.Join(workRoot, "template")
		tplSquash = filepath.Join(workRoot, "template.squashfs")
		if err := buildTemplate(tplDir, tplSquash); err != nil {
			fmt.Fprintln(os.Stderr, "building the template:", err)
			return 1
		}
		release, err := setupUnprivBlock()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer release()
		return m.Run()
	}()
	os.Exit(code)
}

func prerequisites() string {
	if os.Geteuid() != 0 {
		return "needs root (loop devices, mounts, LXC)"
	}
	for _, tool := range []string{"lxc-start", "lxc-stop", "lxc-attach", "lxc-info", "mksquashfs", "mke2fs", "e2fsck", "nsenter", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed (apt-get install lxc squashfs-tools e2fsprogs util-linux)"
		}
	}
	if _, err := busyboxPath(); err != nil {
		return err.Error()
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return "no /dev/loop-control: this kernel or VM has no loop devices"
	}
	return ""
}

func requireEnv(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// needTools fails the test when one of tools is missing. The real tests
// run as root (requireEnv skips them otherwise), where scripts/deps.sh
// installs every tool they use: a skip would let CI pass without the test.
// Only what this kernel cannot do (AuFS) is a reason to skip.
func needTools(t *testing.T, install string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (%s; scripts/deps.sh installs it): this test cannot run without it", tool, install)
		}
	}
}

func busyboxPath() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		static := true
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			return p, nil
		}
	}
	return "", fmt.Errorf("no static busybox (apt-get install busybox-static)")
}

// coverDir is LXC_HOOKS_COVERDIR: when set, the hooks are built with
// coverage instrumentation and write their counters there (GOCOVERDIR).
// lxc-start hands its environment to the hooks it runs (checked by
// scripts/coverage.sh: no counters, no report), so GOCOVERDIR in this
// process's environment reaches every hook and operator command.
var coverDir string

func setupCoverage() error {
	d := os.Getenv("LXC_HOOKS_COVERDIR")
	if d == "" {
		return nil
	}
	d, err := filepath.Abs(d)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	// Hooks of unprivileged containers run as the container's root, a
	// host uid without rights here.
	if err := os.Chmod(d, 0o1777); err != nil {
		return err
	}
	coverDir = d
	return os.Setenv("GOCOVERDIR", d)
}

// testTag is the build tag of test builds (pkg/killpoint's Tag).
const testTag = "lxchooks_testhooks"

func buildBinaries(dir string) error {
	if err := setupCoverage(); err != nil {
		return err
	}
	_, self, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(self))
	for _, name := range []string{"lxc-hook-overlay", "lxc-hook-loopimg", "lxc-hook-aufs"} {
		if m, _ := filepath.Glob(filepath.Join(repo, "cmd", name, "*.go")); len(m) == 0 {
			continue
		}
		// The test build: kill points compiled in (pkg/killpoint), which
		// the fault suite arms; release builds (scripts/build.sh) have none.
		args := []string{"build", "-trimpath", "-tags", testTag}
		if coverDir != "" {
			args = append(args, "-cover", "-coverpkg=./...")
		}
		cmd := exec.Command("go", append(args, "-o", filepath.Join(dir, name), "./cmd/"+name)...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", name, err, out)
		}
	}
	return nil
}

// initScript is the template's init: it stops cleanly on SIGUSR2
// (lxc.signal.halt) and SIGPWR, so lxc-stop without -k is fast.
const initScript = `#!/bin/sh
trap 'sync; exit 0' USR2 PWR TERM
while :; do sleep 3600 & wait $!; done
`

func buildTemplate(dir, squash string) error {
	bb, err := busyboxPath()
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var", "mnt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	b, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), b, 0o755); err != nil {
		return err
	}
	for _, c := range []string{"sh", "ls", "cat", "echo", "sleep", "df", "dd", "sync", "rm", "mount", "sha256sum", "stat", "head", "grep", "mkdir", "touch", "wc", "true", "false", "test", "stat"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", c))
	}
	if err := os.WriteFile(filepath.Join(dir, "sbin", "init"), []byte(initScript), 0o755); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(dir, "etc", "hostname"), []byte("template\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc", "from-template"), []byte("template file\n"), 0o644)
	out, err := exec.Command("mksquashfs", dir, squash, "-noappend", "-quiet", "-no-progress").CombinedOutput()
	if err != nil {
		return fmt.Errorf("mksquashfs: %v\n%s", err, out)
	}
	return nil
}

// cleanupRoot stops anything a failed test left running and removes the
// test tree, unmounting first: never RemoveAll across a live mount.
func cleanupRoot(root string) {
	out, _ := exec.Command("lxc-ls", "-P", filepath.Join(root, "lxc"), "--running", "-1").Output()
	for _, name := range strings.Fields(string(out)) {
		exec.Command("lxc-stop", "-k", "-n", name, "-P", filepath.Join(root, "lxc")).Run()
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var mps []string
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], root) {
			mps = append(mps, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	for _, mp := range mps {
		exec.Command("umount", "-l", mp).Run()
	}
	os.RemoveAll(root)
	removeRuntimeDirsUnder(root)
}

// pinnedUserNS lists the user namespaces pinned in idmap.UserNSDir (one
// per mapping, kept until reboot so that later starts make no process).
func pinnedUserNS() map[string]bool {
	names := map[string]bool{}
	ents, _ := os.ReadDir(idmap.UserNSDir)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names[e.Name()] = true
		}
	}
	return names
}

// unpinNewUserNS drops the pins this run made (those not in before): the
// run's ID blocks are its own and given back at its end, so nothing will
// start with those mappings again, and runs would pile pins up on a CI
// machine until it reboots. Under the pins' lock, as the hooks make them;
// a pin another run made meanwhile is dropped too, which costs that run's
// next start one short-lived process, nothing else.
func unpinNewUserNS(before map[string]bool) {
	lock, err := os.OpenFile(filepath.Join(idmap.UserNSDir, ".lock"), os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return
	}
	for name := range pinnedUserNS() {
		if before[name] {
			continue
		}
		p := filepath.Join(idmap.UserNSDir, name)
		if err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err == nil {
			os.Remove(p)
		}
	}
}

// removeRuntimeDirsUnder drops the hooks' runtime records of this run's
// containers (tests that kill monitors or leave holders keep theirs on
// purpose), so that test runs do not pile records up in /run. Dir.Remove
// uses os.Remove only: a record whose mountpoints are still in use stays.
func removeRuntimeDirsUnder(root string) {
	dirs, _ := filepath.Glob(filepath.Join(state.DefaultRoot, "*"))
	for _, d := range dirs {
		rd := state.Dir{Path: d}
		rec, err := rd.Load()
		if err != nil || rec == nil || !strings.HasPrefix(rec.ConfigFile, root+"/") {
			continue
		}
		rd.Remove(rec)
	}
}

// ---- containers ----

// ctr is one test container under the test run's lxcpath.
type ctr struct {
	t       *testing.T
	name    string
	lxcpath string
	dir     string // lxcpath/name
	rootfs  string
	logFile string
}

type ctrOpts struct {
	hook        string   // binary name, e.g. "lxc-hook-overlay"
	hookPath    string   // the hook's path, default the test build of hook
	args        []string // flags for the hook line
	hookVersion int
	rootfs      string // default: an empty directory in the container's dir
	extra       []string
	hookTypes   []string // default: pre-mount, stop (as init writes them)
	noLogFile   bool     // no lxc.log.file: the log is lxc-start's -o
}

var nameSeq struct {
	sync.Mutex
	n int
}

func uniqueName(prefix string) string {
	nameSeq.Lock()
	defer nameSeq.Unlock()
	nameSeq.n++
	return fmt.Sprintf("%s%d", prefix, nameSeq.n)
}

func newCtr(t *testing.T, o ctrOpts) *ctr {
	t.Helper()
	lxcpath := filepath.Join(workRoot, "lxc")
	name := uniqueName("t")
	c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name)}
	c.rootfs = o.rootfs
	if c.rootfs == "" {
		c.rootfs = filepath.Join(c.dir, "rootfs")
	}
	os.MkdirAll(c.dir, 0o755)
	if err := os.MkdirAll(c.rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	c.logFile = filepath.Join(c.dir, name+".log")
	c.writeConfig(o)
	t.Cleanup(func() {
		if c.state() != "STOPPED" {
			exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
		}
		if t.Failed() {
			b, _ := os.ReadFile(c.logFile)
			t.Logf("LXC log of %s:\n%s", c.name, lastLines(string(b), 40))
		}
	})
	return c
}

func (c *ctr) writeConfig(o ctrOpts) {
	line := filepath.Join(binDir, o.hook)
	if o.hookPath != "" {
		line = o.hookPath
	}
	for _, a := range o.args {
		line += " " + a
	}
	types := o.hookTypes
	if types == nil {
		types = []string{"pre-mount", "stop"}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "lxc.uts.name = %s\n", c.name)
	fmt.Fprintf(&b, "lxc.rootfs.path = dir:%s\n", c.rootfs)
	b.WriteString("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n")
	b.WriteString("lxc.init.cmd = /sbin/init\nlxc.signal.halt = SIGUSR2\n")
	b.WriteString("lxc.mount.auto = proc:mixed sys:ro\nlxc.autodev = 1\n")
	if !o.noLogFile {
		fmt.Fprintf(&b, "lxc.log.file = %s\nlxc.log.level = INFO\n", c.logFile)
	}
	fmt.Fprintf(&b, "lxc.hook.version = %d\n", o.hookVersion)
	for _, ty := range types {
		fmt.Fprintf(&b, "lxc.hook.%s = %s\n", ty, line)
	}
	for _, e := range o.extra {
		b.WriteString(e + "\n")
	}
	if err := os.WriteFile(filepath.Join(c.dir, "config"), []byte(b.String()), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *ctr) lxc(tool string, args ...string) (string, error) {
	all := append([]string{"-n", c.name, "-P", c.lxcpath}, args...)
	out, err := exec.Command(tool, all...).CombinedOutput()
	return string(out), err
}

func (c *ctr) start() error {
	out, err := c.lxc("lxc-start")
	if err != nil {
		return fmt.Errorf("lxc-start %s: %v: %s", c.name, err, strings.TrimSpace(out))
	}
	return nil
}

func (c *ctr) mustStart() {
	c.t.Helper()
	if err := c.start(); err != nil {
		c.t.Fatal(err)
	}
	if s := c.state(); s != "RUNNING" {
		c.t.Fatalf("%s is %s after lxc-start", c.name, s)
	}
}

// stop runs lxc-stop, which returns after the stop hooks; kill uses -k.
func (c *ctr) stop(kill bool) {
	c.t.Helper()
	args := []string{}
	if kill {
		args = append(args, "-k")
	} else {
		c.waitInitReady()
	}
	if out, err := c.lxc("lxc-stop", args...); err != nil {
		c.t.Fatalf("lxc-stop %s: %v: %s", c.name, err, out)
	}
}

// waitInitReady waits, bounded, until the template's init has set its
// signal trap (it has started its first child after the trap): a halt
// signal sent before that is ignored by a PID 1, and lxc-stop then waits
// its full timeout.
func (c *ctr) waitInitReady() {
	c.t.Helper()
	pid := strconv.Itoa(c.pid())
	for i := 0; i < 500; i++ {
		kids, _ := filepath.Glob("/proc/" + pid + "/task/*/children")
		for _, k := range kids {
			if b, _ := os.ReadFile(k); len(strings.TrimSpace(string(b))) > 0 {
				return
			}
		}
		sleepBriefly()
	}
	c.t.Fatalf("init of %s never became ready", c.name)
}

func (c *ctr) state() string {
	out, err := c.lxc("lxc-info", "-sH")
	if err != nil {
		return "UNKNOWN"
	}
	return strings.TrimSpace(out)
}

func (c *ctr) pid() int {
	out, err := c.lxc("lxc-info", "-pH")
	if err != nil {
		c.t.Fatalf("lxc-info -p: %v %s", err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		c.t.Fatalf("lxc-info -p: %q", out)
	}
	return n
}

// sh runs a shell command inside the container.
func (c *ctr) sh(script string) (string, error) {
	out, err := exec.Command("lxc-attach", "-n", c.name, "-P", c.lxcpath, "--clear-env", "--", "/bin/sh", "-c", script).CombinedOutput()
	return string(out), err
}

func (c *ctr) mustSh(script string) string {
	c.t.Helper()
	out, err := c.sh(script)
	if err != nil {
		c.t.Fatalf("in %s: %q: %v: %s", c.name, script, err, out)
	}
	return out
}

// runDir is the hooks' runtime directory for this container.
func (c *ctr) runDir() string {
	return state.For(state.DefaultRoot, c.name, filepath.Join(c.dir, "config")).Path
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func (c *ctr) log() string {
	b, _ := os.ReadFile(c.logFile)
	return string(b)
}

// hookLogLines returns the lines our hooks wrote to the LXC log.
func (c *ctr) hookLogLines(level string) []string {
	var out []string
	for _, l := range strings.Split(c.log(), "\n") {
		if strings.HasPrefix(l, "lxc-hook-") && strings.Contains(l, " "+level+" ") {
			out = append(out, l)
		}
	}
	return out
}

// ---- what a user checks ----

// loopsUnder lists the loop devices whose backing file is a file below dir,
// as "/dev/loopN (PATH)", PATH the file's path below dir. A device's
// backing file is matched by the device and inode numbers the kernel
// reports for it (LOOP_GET_STATUS64), never by the path sysfs shows: that
// path is built from the mount the file was opened through, and once that
// mount is detached (a namespace's copy, a bind mount, a detached tree) it
// is another path, or one relative to that mount, which a path match
// would miss. A backing file deleted since it was attached is in no
// directory: it is matched by the path sysfs shows for it (" (deleted)").
func loopsUnder(dir string) []string {
	files := filesUnder(dir)
	devs, _ := filepath.Glob("/sys/block/loop*/loop") // present while bound
	var out []string
	for _, d := range devs {
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(filepath.Dir(d)), "loop"))
		if err != nil {
			continue
		}
		st, err := loop.StatusOf(n)
		if err != nil {
			continue // detached meanwhile
		}
		p, ok := files[devIno{st.BackingDev, st.BackingIno}]
		if deleted, gone := strings.CutSuffix(st.BackingFile, " (deleted)"); !ok && gone && strings.HasPrefix(deleted, dir+"/") {
			p, ok = st.BackingFile, true
		}
		if ok {
			out = append(out, st.Path+" ("+p+")")
		}
	}
	sort.Strings(out)
	return out
}

type devIno struct{ dev, ino uint64 }

// filesUnder maps the regular files below dir by device and inode number.
// It does not descend into an overlayfs mounted below dir (a running
// unprivileged container's root, attached on the host): no loop device is
// backed by a file of one here, and a distribution's root has many.
func filesUnder(dir string) map[devIno]string {
	files := map[devIno]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile, or unreadable: not a backing file here
		}
		if d.IsDir() && p != dir {
			var sfs unix.Statfs_t
			if unix.Statfs(p, &sfs) == nil && sfs.Type == unix.OVERLAYFS_SUPER_MAGIC {
				return fs.SkipDir
			}
		}
		if !d.Type().IsRegular() {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil {
			files[devIno{st.Dev, st.Ino}] = p
		}
		return nil
	})
	return files
}

func assertNoLoops(t *testing.T, dir, when string) {
	t.Helper()
	if l := loopsUnder(dir); len(l) > 0 {
		t.Fatalf("%s: loop devices still attached: %v", when, l)
	}
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// treeSHA hashes a directory tree: names, modes, link targets, contents.
func treeSHA(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s %v %d\n", rel, fi.Mode(), fi.Size())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			fmt.Fprintln(h, l)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// testDir makes a directory for one test's files under the run's root, so
// loop devices it causes are counted as this run's.
func testDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp(workRoot, strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// copyFile copies the template squashfs so a test can own its loop devices.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func since(t0 time.Time) string { return time.Since(t0).Round(time.Millisecond).String() }

// pinNamespace bind-mounts the container's mount namespace file under dir,
// which keeps the namespace alive with no process in it; undone at cleanup.
func pinNamespace(t *testing.T, c *ctr, dir string) {
	t.Helper()
	pin := filepath.Join(dir, "nspin")
	os.WriteFile(pin, nil, 0o600)
	if out, err := exec.Command("mount", "--bind", "/proc/"+strconv.Itoa(c.pid())+"/ns/mnt", pin).CombinedOutput(); err != nil {
		t.Fatalf("pinning the namespace: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", pin).Run() })
}

// holdNamespace starts "sleep 600" inside the container's mount namespace
// and returns once it is there, with the command line the stop hook should name.
func holdNamespace(t *testing.T, c *ctr) (*exec.Cmd, string) {
	t.Helper()
	holder := exec.Command("nsenter", "-t", strconv.Itoa(c.pid()), "-m", "/bin/sleep", "600")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	waitNS(t, holder.Process.Pid, c.pid())
	return holder, "pid " + strconv.Itoa(holder.Process.Pid) + " (/bin/sleep 600)"
}
