package freeze

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
)

// TestMain: the test binary is also the watchdog (Start execs
// /proc/self/exe), and, for the copier-killed tests, the copier.
func TestMain(m *testing.M) {
	if IsWatchdog() {
		os.Exit(WatchdogMain())
	}
	if p := os.Getenv("FREEZE_TEST_COPIER"); p != "" {
		os.Exit(copierChild(p))
	}
	os.Exit(m.Run())
}

// copierChild freezes the target named by spec ("fs:/dev/loopN" or
// "cgroup1:DIR", "cgroup2:DIR"), says so, and waits to be killed.
func copierChild(spec string) int {
	kind, path, _ := strings.Cut(spec, ":")
	var t Target
	switch Kind(kind) {
	case Filesystem:
		dev, err := os.Open(path)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		t = FilesystemOn(dev)
	default:
		dir, err := os.Open(path)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		t = Target{Kind: Kind(kind), file: dir, own: true}
	}
	f, err := Start(t, Options{Max: time.Minute})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("frozen", f.cmd.Process.Pid)
	select {}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices, mounts, FIFREEZE, cgroups")
	}
}

// ext4 is a small ext4 image on an autoclear loop device, mounted detached
// in this process (as the container's mount would be): its device, and a
// file open for writing in it.
type ext4 struct {
	dev  *os.File
	mnt  int
	data *os.File
}

func newExt4(t *testing.T) *ext4 {
	t.Helper()
	needRoot(t)
	img := filepath.Join(t.TempDir(), "layer.img")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", img, "32M").CombinedOutput(); err != nil {
		t.Skipf("mke2fs: %v %s", err, out)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := loop.Attach(f, loop.Options{Autoclear: true})
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	defer d.Close()
	fsfd, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", d.Path); err != nil {
		t.Fatal(err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		t.Fatal(err)
	}
	mnt, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Openat(mnt, "data", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	e := &ext4{dev: dev, mnt: mnt, data: os.NewFile(uintptr(dfd), "data")}
	t.Cleanup(func() {
		e.thawed() // never leave it frozen, whatever failed
		e.data.Close()
		unix.Close(e.mnt)
		e.dev.Close() // the last reference: autoclear detaches the device
	})
	return e
}

// write starts a write and fsync in the filesystem; the channel gets its
// result when it completes.
func (e *ext4) write() <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := e.data.Write([]byte("x"))
		if err == nil {
			err = e.data.Sync()
		}
		done <- err
	}()
	return done
}

// thawed reports whether the filesystem was frozen (and thaws it): FITHAW
// answers EINVAL on a filesystem that is not.
func (e *ext4) thawed() bool {
	root, err := unix.Openat(e.mnt, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(root)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(root), fiThaw, 0)
	return errno == unix.EINVAL
}

func (e *ext4) freezeHere(t *testing.T) {
	t.Helper()
	root, err := unix.Openat(e.mnt, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(root), fiFreeze, 0); errno != 0 {
		t.Fatal(errno)
	}
}

// blocked asserts that the write has not completed within d (it would,
// within microseconds, on a filesystem that is not frozen).
func blocked(t *testing.T, w <-chan error, d time.Duration, when string) {
	t.Helper()
	select {
	case err := <-w:
		t.Fatalf("%s: a write completed (%v): the filesystem is not frozen", when, err)
	case <-time.After(d):
	}
}

// completes asserts that the write completes within d.
func completes(t *testing.T, w <-chan error, d time.Duration, when string) {
	t.Helper()
	select {
	case err := <-w:
		if err != nil {
			t.Fatalf("%s: write: %v", when, err)
		}
	case <-time.After(d):
		t.Fatalf("%s: the write is still blocked after %s: the filesystem was left frozen", when, d)
	}
}

// Frozen by the watchdog through its own detached mount: writes in the
// "container's" mount block until Thaw, which reports the time frozen.
func TestFilesystemFreezeAndThaw(t *testing.T) {
	e := newExt4(t)
	f, err := Start(FilesystemOn(e.dev), Options{Max: time.Minute, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	w := e.write()
	blocked(t, w, 300*time.Millisecond, "frozen")
	res, err := f.Thaw()
	if err != nil || res.Kind != Filesystem || res.Frozen < 300*time.Millisecond || res.Already {
		t.Fatalf("thaw: %+v %v", res, err)
	}
	completes(t, w, 10*time.Second, "after Thaw")
	if !e.thawed() {
		t.Fatal("still frozen after Thaw")
	}
	if r2, err2 := f.Thaw(); r2 != res || err2 != nil {
		t.Fatalf("a second Thaw: %+v %v", r2, err2)
	}
}

// The watchdog thaws at its limit by itself; Done closes; Thaw says the
// freeze did not hold.
func TestFilesystemFreezeLimit(t *testing.T) {
	e := newExt4(t)
	f, err := Start(FilesystemOn(e.dev), Options{Max: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w := e.write()
	select {
	case <-f.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the limit did not end the freeze")
	}
	completes(t, w, 10*time.Second, "after the limit")
	if _, err := f.Thaw(); !errors.Is(err, ErrLimit) {
		t.Fatalf("Thaw after the limit: %v", err)
	}
}

// Thawed by someone else meanwhile: Thaw says so.
func TestFilesystemFreezeLost(t *testing.T) {
	e := newExt4(t)
	f, err := Start(FilesystemOn(e.dev), Options{Max: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if e.thawed() { // false: it was frozen, and is thawed now
		t.Fatal("Start did not freeze")
	}
	if _, err := f.Thaw(); !errors.Is(err, ErrLost) {
		t.Fatalf("Thaw after someone thawed: %v", err)
	}
	if !e.thawed() {
		t.Fatal("left frozen")
	}
}

// Frozen before (fsfreeze by someone else): copied as it is, left frozen.
func TestFilesystemAlreadyFrozen(t *testing.T) {
	e := newExt4(t)
	e.freezeHere(t)
	f, err := Start(FilesystemOn(e.dev), Options{Max: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Thaw()
	if err != nil || !res.Already {
		t.Fatalf("%+v %v", res, err)
	}
	if e.thawed() {
		t.Fatal("a freeze of someone else's was lifted")
	}

	// Someone else's freeze lifted during the copy (two copies at once,
	// the first done first): the copy fails, and nothing stays frozen.
	e.freezeHere(t)
	f, err = Start(FilesystemOn(e.dev), Options{Max: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if e.thawed() { // lifts the first holder's freeze; true: there was none
		t.Fatal("not frozen by its first holder")
	}
	if _, err := f.Thaw(); !errors.Is(err, ErrLost) {
		t.Fatalf("someone else's freeze lifted during the copy: %v", err)
	}
	if !e.thawed() {
		t.Fatal("left frozen")
	}
}

// A stopped container: no superblock to freeze, and none made.
func TestFilesystemNotMounted(t *testing.T) {
	needRoot(t)
	img := filepath.Join(t.TempDir(), "layer.img")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", img, "32M").CombinedOutput(); err != nil {
		t.Skipf("mke2fs: %v %s", err, out)
	}
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	defer f.Close()
	d, err := loop.Attach(f, loop.Options{Autoclear: true})
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	defer d.Close()
	dev, _ := os.Open(d.Path)
	defer dev.Close()
	if _, err := Start(FilesystemOn(dev), Options{}); err == nil || !strings.Contains(err.Error(), "no ext4 filesystem is mounted") {
		t.Fatalf("freeze of an unmounted image: %v", err)
	}
}

// startCopier runs the copier child on spec and returns it once it has
// frozen, with the watchdog's pid.
func startCopier(t *testing.T, spec string) (*exec.Cmd, int) {
	t.Helper()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), "FREEZE_TEST_COPIER="+spec)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	var pid int
	if _, err := fmt.Sscanf(line, "frozen %d", &pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("copier: %q", line)
	}
	return cmd, pid
}

// waitExit waits, bounded, until pid is gone.
func waitExit(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if unix.Kill(pid, 0) != nil {
			return
		}
	}
	t.Fatalf("watchdog %d still running after %s", pid, d)
}

// The copier SIGKILLed while the filesystem is frozen: the watchdog sees
// its pipe close, thaws, and exits; the blocked write completes.
func TestFilesystemThawedWhenCopierKilled(t *testing.T) {
	e := newExt4(t)
	cmd, wd := startCopier(t, "fs:"+e.dev.Name())
	w := e.write()
	blocked(t, w, 200*time.Millisecond, "frozen by the copier")
	cmd.Process.Kill()
	cmd.Wait()
	completes(t, w, 10*time.Second, "after the copier was killed")
	waitExit(t, wd, 10*time.Second)
	if !e.thawed() {
		t.Fatal("left frozen")
	}
}

// A cgroup of its own with a sleeping process in it, under the v1 freezer
// or cgroup v2; removed at cleanup.
func testCgroup(t *testing.T, k Kind) (dir string, pid int) {
	t.Helper()
	needRoot(t)
	mounts, _ := mountinfo.GetMounts(nil)
	mp := ""
	for _, m := range mounts {
		if m.Root == "/" && (k == CgroupV1 && m.FSType == "cgroup" && hasOption(m.VFSOptions, "freezer") || k == CgroupV2 && m.FSType == "cgroup2") {
			mp = m.Mountpoint
			break
		}
	}
	if mp == "" {
		t.Skipf("no %s hierarchy mounted here", k)
	}
	dir = filepath.Join(mp, "lxc-hooks-freeze-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if k == CgroupV2 {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.freeze")); err != nil {
			os.Remove(dir)
			t.Skip("cgroup v2 without cgroup.freeze (before Linux 5.2)")
		}
	}
	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sleeper.Process.Kill()
		os.WriteFile(filepath.Join(dir, map[Kind]string{CgroupV1: "freezer.state", CgroupV2: "cgroup.freeze"}[k]), []byte(map[Kind]string{CgroupV1: "THAWED", CgroupV2: "0"}[k]), 0)
		sleeper.Wait()
		os.Remove(dir) // rmdir of an empty cgroup
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	return dir, sleeper.Process.Pid
}

func cgroupFrozen(t *testing.T, k Kind, dir string) bool {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	f, err := (&cgroupHolder{dir: d, v2: k == CgroupV2}).frozen()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCgroupFreeze(t *testing.T) {
	for _, k := range []Kind{CgroupV1, CgroupV2} {
		t.Run(string(k), func(t *testing.T) {
			dir, _ := testCgroup(t, k)
			d, err := os.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			f, err := Start(Target{Kind: k, file: d}, Options{Max: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if !cgroupFrozen(t, k, dir) {
				t.Fatal("not frozen after Start")
			}
			res, err := f.Thaw()
			if err != nil || res.Kind != k || res.Already {
				t.Fatalf("%+v %v", res, err)
			}
			if cgroupFrozen(t, k, dir) {
				t.Fatal("still frozen after Thaw")
			}

			// The copier killed: thawed by the watchdog.
			cmd, wd := startCopier(t, string(k)+":"+dir)
			if !cgroupFrozen(t, k, dir) {
				t.Fatal("not frozen by the copier")
			}
			cmd.Process.Kill()
			cmd.Wait()
			waitExit(t, wd, 10*time.Second)
			if cgroupFrozen(t, k, dir) {
				t.Fatal("left frozen after the copier was killed")
			}
		})
	}
}
