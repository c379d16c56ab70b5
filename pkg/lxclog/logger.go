package lxclog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Options say where a hook logs.
type Options struct {
	Program   string // e.g. "lxc-hook-overlay"
	Category  string // e.g. "overlay"
	Container string
	Hook      string
	// ConfigFile is LXC_CONFIG_FILE; its lxc.log.* keys are read.
	ConfigFile string
	// EnvLevel is LXC_LOG_LEVEL; FlagLevel is --log-level, which wins.
	EnvLevel  string
	FlagLevel string
	// ParentPID is the LXC process that ran the hook; its open log file is
	// used when the config names none (lxc-start -o FILE).
	ParentPID int
	// File, if set, is the LXC log already open (by a hook that passed
	// it on): used instead of looking for it.
	File   *os.File
	Stderr io.Writer
}

// New returns a logger writing to stderr and, where one is found, to the
// container's LXC log file. The returned closer closes that file.
func New(o Options) (*logrus.Entry, io.Closer, error) {
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	var cfg ConfigLog
	if o.ConfigFile != "" {
		if f, err := os.Open(o.ConfigFile); err == nil {
			cfg = ParseConfig(f)
			f.Close()
		}
	}
	level := logrus.ErrorLevel // LXC's default priority
	for _, s := range []string{cfg.Level, o.EnvLevel, o.FlagLevel} {
		if s == "" {
			continue
		}
		l, ok := ParseLevel(s)
		if !ok {
			if s == o.FlagLevel {
				return nil, nil, fmt.Errorf("--log-level %q: use trace, debug, info, warn or error", s)
			}
			continue
		}
		level = l
	}

	// A literal rather than logrus.New(): New installs logrus's
	// TextFormatter, which this package never uses, and linking it would
	// push the hooks past their size budget.
	logger := &logrus.Logger{
		Out:       o.Stderr,
		Formatter: &StderrFormatter{Program: o.Program},
		Hooks:     make(logrus.LevelHooks),
		Level:     level,
		ExitFunc:  os.Exit,
	}
	if level < logrus.WarnLevel {
		// Warnings still reach a person running the hook by hand.
		logger.SetLevel(logrus.WarnLevel)
	}

	var closer io.Closer = nopCloser{}
	f := o.File
	var openErr error
	if f == nil {
		f, openErr = openLog(o, cfg)
	}
	if f != nil {
		closer = f
		logger.AddHook(&fileHook{w: f, level: level, fmt: &LXCFormatter{Program: o.Program, Category: o.Category}})
		if level > logger.Level {
			logger.SetLevel(level)
		}
	}
	if o.ParentPID > 0 {
		// Run by LXC: warnings and errors reach the person at lxc-start
		// too (see userstderr_linux.go). The file is left to the exit.
		lxcpath := ""
		if o.ConfigFile != "" {
			lxcpath = filepath.Dir(filepath.Dir(o.ConfigFile))
		}
		logger.AddHook(&userStderrHook{
			fmt:  &StderrFormatter{Program: o.Program},
			find: func() *os.File { return findUserStderr(o.ParentPID, o.Hook, o.Container, lxcpath) },
		})
	}
	entry := logger.WithFields(logrus.Fields{FieldContainer: o.Container, FieldHook: o.Hook})
	if openErr != nil {
		// Where a run's lines go must not be a choice of whoever can
		// write the log's directory; said on stderr (LXC's debug log).
		entry.Warnf("the LXC log is not written: %v", openErr)
	}
	return entry, closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// fileHook writes entries at or above level to the LXC log file.
type fileHook struct {
	w     io.Writer
	level logrus.Level
	fmt   logrus.Formatter
}

func (h *fileHook) Levels() []logrus.Level { return logrus.AllLevels[:h.level+1] }

func (h *fileHook) Fire(e *logrus.Entry) error {
	b, err := h.fmt.Format(e)
	if err != nil {
		return err
	}
	// One write per line: LXC appends to the same file with O_APPEND.
	_, err = h.w.Write(b)
	return err
}

// openLog opens the file LXC logs this container to, for appending:
// lxc.log.file, else the file LXC itself holds open for appending
// (lxc-start -o FILE), else the default $lxcpath/NAME/NAME.log where LXC
// created one. No link is followed: a path is opened O_NOFOLLOW and must
// be a root-owned regular file with one name (a symlink or hard link
// planted there by whoever can write its directory would make root append
// to the file it points at); LXC's own open file is reopened through
// /proc/PID/fd (the very file, whatever is at its path now) and checked
// to be the inode LXC has open. It returns nil, nil when there is none or
// it cannot be opened, and an error for a file it refuses.
func openLog(o Options, cfg ConfigLog) (*os.File, error) {
	if cfg.File != "" {
		return openByPath(cfg.File, true)
	}
	if f, err := openParentLog(o.ParentPID, cfg.ConsoleFile); f != nil || err != nil {
		return f, err
	}
	if o.ConfigFile != "" && o.Container != "" {
		return openByPath(filepath.Join(filepath.Dir(o.ConfigFile), o.Container+".log"), false)
	}
	return nil, nil
}

// openByPath opens a log file by its path without following a symlink
// there (O_NOFOLLOW; O_NONBLOCK so that a FIFO planted there cannot block
// the hook, and LXC's start with it, forever), creating it if create.
func openByPath(p string, create bool) (*os.File, error) {
	flags := os.O_WRONLY | os.O_APPEND | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(p, flags, 0o640)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symlink: refused (LXC logs to a file, not through a link)", p)
	}
	if err != nil {
		// Missing, or not ours to open (an unprivileged container's
		// root): no LXC log, as before; nothing to warn about.
		return nil, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = fmt.Errorf("%s is not a regular file: refused", p)
	case st.Uid != 0 && int(st.Uid) != os.Geteuid():
		err = fmt.Errorf("%s is owned by uid %d, not root: refused", p, st.Uid)
	case st.Nlink > 1:
		err = fmt.Errorf("%s has %d hard links: refused (another name of it may be any file)", p, st.Nlink)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openParentLog reopens the one regular file the parent LXC process has
// open in append mode, which is how LXC opens its log: through
// /proc/PID/fd/N, which reaches the open file itself, not its path; then
// the file opened is checked to be the inode found (the descriptor may
// have been closed and reused in between).
func openParentLog(ppid int, consoleFile string) (*os.File, error) {
	fd, want, ok := parentLogFD(ppid, consoleFile)
	if !ok {
		return nil, nil
	}
	p := "/proc/" + strconv.Itoa(ppid) + "/fd/" + fd
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil // gone with its process, or not ours to open
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Dev != want.Dev || st.Ino != want.Ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fmt.Errorf("the log lxc-start has open (%s) changed while it was reopened: refused", p)
	}
	return f, nil
}

// parentLogFD finds the descriptor of the parent LXC process's log: the
// one regular file it has open in append mode (other than the console
// log), and the file's identity.
func parentLogFD(ppid int, consoleFile string) (fd string, st unix.Stat_t, ok bool) {
	if ppid <= 1 {
		return "", st, false
	}
	// Only an LXC process (lxc-start, its monitor, lxc-stop's helpers): a
	// hook run any other way must not append to its parent's files.
	if comm, err := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/comm"); err != nil || !strings.HasPrefix(string(comm), "lxc-") {
		return "", st, false
	}
	dir := "/proc/" + strconv.Itoa(ppid) + "/fd"
	d, err := os.Open(dir)
	if err != nil {
		return "", st, false
	}
	fds, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range fds {
		target, err := os.Readlink(filepath.Join(dir, n))
		if err != nil || !strings.HasPrefix(target, "/") || target == consoleFile {
			continue
		}
		// stat through the magic link: the open file's own inode.
		var s unix.Stat_t
		if unix.Stat(filepath.Join(dir, n), &s) != nil || s.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		info, err := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/fdinfo/" + n)
		if err != nil || !appendMode(string(info)) {
			continue
		}
		if ok && (s.Dev != st.Dev || s.Ino != st.Ino) {
			return "", st, false // two candidates: do not guess
		}
		fd, st, ok = n, s, true
	}
	return fd, st, ok
}

// appendMode reads the octal "flags:" line of a /proc/PID/fdinfo file.
func appendMode(fdinfo string) bool {
	for _, line := range strings.Split(fdinfo, "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			return err == nil && flags&uint64(os.O_APPEND) != 0
		}
	}
	return false
}
