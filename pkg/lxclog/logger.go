package lxclog

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
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
	if f == nil {
		if path := logFile(o, cfg); path != "" {
			f, _ = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o640)
		}
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

// logFile finds the file LXC logs this container to: lxc.log.file, else the
// file LXC itself holds open for appending (lxc-start -o FILE), else the
// default $lxcpath/NAME/NAME.log where LXC created one.
func logFile(o Options, cfg ConfigLog) string {
	if cfg.File != "" {
		return cfg.File
	}
	if p := parentLogFile(o.ParentPID, cfg.ConsoleFile); p != "" {
		return p
	}
	if o.ConfigFile != "" && o.Container != "" {
		p := filepath.Join(filepath.Dir(o.ConfigFile), o.Container+".log")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// parentLogFile looks for the one regular file the parent LXC process has
// open in append mode, which is how LXC opens its log.
func parentLogFile(ppid int, consoleFile string) string {
	if ppid <= 1 {
		return ""
	}
	// Only an LXC process (lxc-start, its monitor, lxc-stop's helpers): a
	// hook run any other way must not append to its parent's files.
	if comm, err := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/comm"); err != nil || !strings.HasPrefix(string(comm), "lxc-") {
		return ""
	}
	dir := "/proc/" + strconv.Itoa(ppid) + "/fd"
	d, err := os.Open(dir)
	if err != nil {
		return ""
	}
	fds, _ := d.Readdirnames(-1)
	d.Close()
	found := ""
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, fd))
		if err != nil || !strings.HasPrefix(target, "/") || target == consoleFile {
			continue
		}
		if fi, err := os.Stat(target); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		info, err := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/fdinfo/" + fd)
		if err != nil || !appendMode(string(info)) {
			continue
		}
		if found != "" && found != target {
			return "" // ambiguous: do not guess
		}
		found = target
	}
	return found
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
