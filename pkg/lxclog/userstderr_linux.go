package lxclog

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// LXC keeps what a hook writes to its stderr for its own log, at DEBUG
// only: the person who typed lxc-start sees "Received container state
// "ABORTING" instead of "RUNNING"", or with -F "Failed to run
// lxc.hook.pre-mount", and not why. So the hooks' warnings and errors also
// go to the stderr of the LXC command that person runs:
//
//   - lxc-start -F (and a stop of a foreground container): the LXC process
//     that ran the hook still has that person's stderr;
//   - a daemonized lxc-start: the monitor's stdio is /dev/null, but the
//     lxc-start command waits for the container's state meanwhile, as
//     lxc-stop waits for the stop hooks. It is found by what it is: the one
//     lxc-start (lxc-stop for the stop hooks) of this uid whose arguments
//     name this container (and its -P, when given), read and opened through
//     one open /proc/PID, so that a PID reused meanwhile names nothing.
//
// Opened non-blocking: a terminal on hold or a pipe nobody reads loses a
// line rather than hold the hook.

// userStderrHook writes warnings and errors to the user's stderr, found
// at the first one.
type userStderrHook struct {
	find func() *os.File
	fmt  logrus.Formatter
	once sync.Once
	w    *os.File
}

func (h *userStderrHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h *userStderrHook) Fire(e *logrus.Entry) error {
	h.once.Do(func() { h.w = h.find() })
	if h.w == nil {
		return nil
	}
	b, err := h.fmt.Format(e)
	if err == nil {
		_, _ = h.w.Write(b) // best effort: the log file has the line
	}
	return nil
}

// waitingTool is the LXC command that waits for a hook of type hookType.
func waitingTool(hookType string) string {
	switch hookType {
	case "stop", "post-stop":
		return "lxc-stop"
	}
	return "lxc-start"
}

// findUserStderr returns the stderr of the LXC command the user runs for
// container (see above), or nil.
func findUserStderr(ppid int, hookType, container, lxcpath string) *os.File {
	if ppid > 1 {
		if f, ok := parentStderr(ppid); ok {
			return f // nil too: the parent's stderr is ours (a hand run)
		}
	}
	if container == "" {
		return nil
	}
	tool := waitingTool(hookType)
	proc, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := proc.Readdirnames(-1)
	proc.Close()
	var found *os.File
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid == ppid || pid == os.Getpid() {
			continue
		}
		f := stderrIfWaiting(pid, tool, container, lxcpath)
		if f == nil {
			continue
		}
		if found != nil {
			// Two commands for one container: do not guess.
			found.Close()
			f.Close()
			return nil
		}
		found = f
	}
	return found
}

// parentStderr opens the stderr of the LXC process that ran the hook.
func parentStderr(ppid int) (*os.File, bool) {
	dir, err := os.Open("/proc/" + strconv.Itoa(ppid))
	if err != nil {
		return nil, false
	}
	defer dir.Close()
	d := procDir{int(dir.Fd())}
	if !strings.HasPrefix(string(d.read("comm")), "lxc-") {
		return nil, false
	}
	return d.openStderr()
}

// stderrIfWaiting opens the stderr of pid if pid is a command tool of this
// uid for container under lxcpath. Everything is read through one open
// /proc/PID directory: it stays bound to that very process (a new process
// that gets the number has a /proc entry of its own), so once the process
// is gone every read through it fails instead of reading another's. (A
// pidfd would do too, but pre-mount runs in the container's new PID
// namespace, where the host's PIDs mean nothing to pidfd_open.)
func stderrIfWaiting(pid int, tool, container, lxcpath string) *os.File {
	dir, err := os.Open("/proc/" + strconv.Itoa(pid))
	if err != nil {
		return nil
	}
	defer dir.Close()
	d := procDir{int(dir.Fd())}
	if strings.TrimSpace(string(d.read("comm"))) != tool {
		return nil
	}
	if uid, ok := realUID(d.read("status")); !ok || uid != os.Getuid() {
		return nil
	}
	cmdline := d.read("cmdline")
	if cmdline == nil {
		return nil
	}
	cwd, _ := readlinkat(d.fd, "cwd")
	if !namesContainer(strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00"), container, lxcpath, cwd) {
		return nil
	}
	f, ok := d.openStderr()
	if !ok {
		return nil
	}
	return f
}

// procDir is an open /proc/PID.
type procDir struct{ fd int }

func (d procDir) read(name string) []byte {
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil
	}
	return b
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// openStderr opens the process's fd 2 for appending. ok is false where it
// is /dev/null or cannot be opened (a socket, no permission); f is nil
// with ok true where it is this process's own stderr.
func (d procDir) openStderr() (*os.File, bool) {
	var st unix.Stat_t
	if unix.Fstatat(d.fd, "fd/2", &st, 0) != nil {
		return nil, false
	}
	if st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 3 {
		return nil, false // /dev/null: a daemonized LXC's
	}
	var own unix.Stat_t
	if unix.Fstat(2, &own) == nil && own.Dev == st.Dev && own.Ino == st.Ino {
		return nil, true
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && !appendMode(string(d.read("fdinfo/2"))) {
		// "2>file" without append: the command writes at its own offset,
		// over what was appended meanwhile. The log file has the line.
		return nil, false
	}
	fd, err := unix.Openat(d.fd, "fd/2", unix.O_WRONLY|unix.O_APPEND|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	return os.NewFile(uintptr(fd), "stderr of LXC's command"), true
}

func realUID(status []byte) (int, bool) {
	for _, line := range bytes.Split(status, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("Uid:")); ok {
			f := strings.Fields(string(v))
			if len(f) == 0 {
				return 0, false
			}
			n, err := strconv.Atoi(f[0])
			return n, err == nil
		}
	}
	return 0, false
}

// namesContainer reports whether an LXC command line (lxc-start -n NAME,
// --name=NAME, -nNAME, or the name as an argument) is for container, and,
// where it gives -P/--lxcpath, for lxcpath (relative to the command's
// working directory cwd).
func namesContainer(argv []string, container, lxcpath, cwd string) bool {
	if len(argv) < 2 {
		return false
	}
	named := false
	path := ""
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		next := func() string {
			if i+1 < len(argv) {
				return argv[i+1]
			}
			return ""
		}
		switch {
		case a == "--":
			i = len(argv) // the command for the container follows
		case a == container, a == "-n"+container, a == "--name="+container:
			named = true
		case a == "-P", a == "--lxcpath":
			path = next()
			i++
		case strings.HasPrefix(a, "--lxcpath="):
			path = strings.TrimPrefix(a, "--lxcpath=")
		case strings.HasPrefix(a, "-P"):
			path = strings.TrimPrefix(a, "-P")
		}
	}
	if !named {
		return false
	}
	if path == "" || lxcpath == "" {
		return true
	}
	if !filepath.IsAbs(path) {
		if cwd == "" {
			return false
		}
		path = filepath.Join(cwd, path)
	}
	return filepath.Clean(path) == filepath.Clean(lxcpath)
}
