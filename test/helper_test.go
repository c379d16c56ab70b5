package test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Helper processes: the test binary run again with helperEnv set does one
// job that needs a thread in another namespace, and never runs a test.
// Such a thread must not be the test process's own (a locked thread left
// in a private mount namespace can end up as the main thread and wedge the
// rest of the run there; see BRIEF "Update (second wave)"), so the job runs
// in a child, which says "ready" on stdout once its state is set up and
// keeps it until its stdin closes.
const helperEnv = "LXC_HOOKS_TEST_HELPER"

func init() {
	if os.Getenv(helperEnv) != "" {
		// An init function that locks keeps the main goroutine on the main
		// thread: namespaces it joins are the process's own in /proc/PID.
		runtime.LockOSThread()
	}
}

// runHelper runs the helper job named in the environment, if any, and
// reports whether it did (TestMain then exits with code).
func runHelper() (code int, ran bool) {
	job := os.Getenv(helperEnv)
	if job == "" {
		return 0, false
	}
	args := strings.Fields(os.Getenv(helperEnv + "_ARGS"))
	var err error
	switch job {
	case "nsfill":
		err = nsFill(args)
	case "mounter":
		err = mounter(args)
	default:
		err = fmt.Errorf("unknown helper %q", job)
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1, true
	}
	return 0, true
}

// helper is a running helper process.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startHelper starts helper job with args and waits for its first line,
// which it returns ("ready ..." or the reason it could not).
func startHelper(t *testing.T, job string, args ...string) (*helper, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+job, helperEnv+"_ARGS="+strings.Join(args, " "))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(h.end)
	line, _ := h.out.ReadString('\n')
	return h, strings.TrimSpace(line)
}

// end closes the helper's stdin, which ends it, and reaps it.
func (h *helper) end() {
	if h.stdin != nil {
		h.stdin.Close()
		h.stdin = nil
		h.cmd.Wait()
	}
}

// waitStdin blocks until the parent closes stdin (or dies).
func waitStdin() { io.Copy(io.Discard, os.Stdin) }

// nsFill makes namespace number TARGET (a mount namespace's inode number
// that was just freed) the next one the kernel hands out. Namespace
// numbers of every kind come from one allocator, which gives the lowest
// free number: the helper takes new UTS namespaces (which copy no mounts)
// and keeps each whose number is below TARGET, filling the gaps; the one
// that gets TARGET is freed again at once. It answers "ready" (TARGET is
// now the lowest free number, until the helper ends), or "taken N" when
// the allocator skipped TARGET (another process has it).
func nsFill(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: nsfill TARGET")
	}
	target, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return err
	}
	home, err := unix.Open("/proc/thread-self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	var held []int
	for i := 0; i < 100000; i++ {
		if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		fd, err := unix.Open("/proc/thread-self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Setns(home, unix.CLONE_NEWUTS); err != nil {
			return fmt.Errorf("setns back: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		switch {
		case st.Ino < target:
			held = append(held, fd)
			continue
		case st.Ino == target:
			unix.Close(fd)
			fmt.Printf("ready (%d gaps below filled)\n", len(held))
		default:
			unix.Close(fd)
			fmt.Printf("taken: the allocator gave %d after filling %d gaps\n", st.Ino, len(held))
		}
		waitStdin()
		return nil
	}
	return fmt.Errorf("more than 100000 free numbers below %d", target)
}

// mounter mounts the ext4 filesystem on DEVICE in a mount namespace of its
// own, as a backup or inspection tool would, and keeps it mounted: its
// namespace has nothing else (it pivots into a tmpfs at DIR and detaches
// the host's mounts its copy started with, so it keeps no other device).
func mounter(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: mounter DEVICE DIR")
	}
	dev, dir := args[0], args[1]
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make private: %w", err)
	}
	if err := unix.Mount("lxc-hooks-test-mounter", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		return fmt.Errorf("tmpfs: %w", err)
	}
	for _, d := range []string{"old", "mnt"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	if err := unix.Mount(dev, filepath.Join(dir, "mnt"), "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "old"); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount("old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the old root: %w", err)
	}
	unix.Chdir("/")
	fmt.Println("ready")
	waitStdin()
	return nil
}
