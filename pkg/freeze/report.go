package freeze

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// WatchdogName is the watchdog's argv[0]: the hook binaries' main runs
// WatchdogMain when it sees it (IsWatchdog).
const WatchdogName = "lxc-hook-freeze-watchdog"

// Kind is what a freeze holds still.
type Kind string

const (
	// Filesystem is FIFREEZE on an ext4 superblock (an image layer).
	Filesystem Kind = "fs"
	// CgroupV1 is the cgroup v1 freezer (freezer.state).
	CgroupV1 Kind = "cgroup1"
	// CgroupV2 is cgroup v2's cgroup.freeze.
	CgroupV2 Kind = "cgroup2"
)

func (k Kind) valid() bool { return k == Filesystem || k == CgroupV1 || k == CgroupV2 }

// Describe says what a freeze of kind k holds, for the user.
func (k Kind) Describe() string {
	switch k {
	case Filesystem:
		return "filesystem freeze (FIFREEZE)"
	case CgroupV1:
		return "cgroup v1 freezer"
	case CgroupV2:
		return "cgroup v2 freezer"
	}
	return string(k)
}

// Options bound a freeze.
type Options struct {
	// Max is the longest the target stays frozen: the watchdog thaws it
	// then whatever the copier does (DefaultMax when 0).
	Max time.Duration
	// Settle bounds the freeze itself (DefaultSettle when 0): a cgroup
	// whose processes do not all stop (one in uninterruptible sleep) is
	// thawed and the freeze fails.
	Settle time.Duration
	// Name names the container on the watchdog's command line (ps).
	Name string
}

// DefaultMax is how long a copy may keep a container frozen unless told
// otherwise: a data-range copy of 2 GiB takes 10-20 s on a plain disk.
const DefaultMax = 2 * time.Minute

// DefaultSettle bounds the freeze itself.
const DefaultSettle = 10 * time.Second

func (o Options) withDefaults() Options {
	if o.Max <= 0 {
		o.Max = DefaultMax
	}
	if o.Settle <= 0 {
		o.Settle = DefaultSettle
	}
	return o
}

// Result is what a freeze cost the container.
type Result struct {
	Kind Kind
	// Frozen is how long the container could not write: from the freeze
	// request to the thaw's return, as the watchdog measured it.
	Frozen time.Duration
	// Already: the target was frozen before (lxc-freeze, fsfreeze by
	// someone else), was copied as it was, and is left frozen.
	Already bool
}

// ErrLimit means the watchdog thawed at Options.Max, before the copier
// was done: whatever was copied after that is not consistent.
var ErrLimit = errors.New("the freeze reached its time limit and was lifted before the copy ended")

// ErrLost means the freeze was lifted by someone else during the copy.
var ErrLost = errors.New("the freeze was lifted by someone else during the copy")

// ErrWatchdog means the watchdog ended without reporting a thaw.
var ErrWatchdog = errors.New("the freeze watchdog ended without reporting")

// The watchdog reports on its pipe, one line each:
//
//	frozen            the target is frozen (by the watchdog)
//	already           the target was frozen before; it is left as it is
//	error TEXT        nothing is frozen (any partial freeze undone)
//	thawed NS WHY     thawed after NS nanoseconds frozen; WHY is asked,
//	                  limit or lost (or already: left frozen, untouched)
const (
	lineFrozen  = "frozen"
	lineAlready = "already"
	lineError   = "error"
	lineThawed  = "thawed"

	whyAsked   = "asked"
	whyLimit   = "limit"
	whyLost    = "lost"
	whyAlready = "already"
)

func thawedLine(d time.Duration, why string) string {
	return fmt.Sprintf("%s %d %s", lineThawed, d.Nanoseconds(), why)
}

// parseThawed reads a "thawed NS WHY" line.
func parseThawed(line string) (time.Duration, string, error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != lineThawed {
		return 0, "", fmt.Errorf("unexpected report %q", line)
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || ns < 0 {
		return 0, "", fmt.Errorf("unexpected report %q", line)
	}
	switch f[2] {
	case whyAsked, whyLimit, whyLost, whyAlready:
	default:
		return 0, "", fmt.Errorf("unexpected report %q", line)
	}
	return time.Duration(ns), f[2], nil
}

// errorLine keeps an error on one line.
func errorLine(err error) string {
	return lineError + " " + strings.ReplaceAll(err.Error(), "\n", " ")
}

// watchdogArgs is the watchdog's command line after argv[0].
func watchdogArgs(k Kind, o Options) []string {
	name := o.Name
	if name == "" {
		name = "-"
	}
	return []string{string(k), o.Max.String(), o.Settle.String(), name}
}

// parseWatchdogArgs reads them back.
func parseWatchdogArgs(args []string) (Kind, Options, error) {
	if len(args) != 4 {
		return "", Options{}, fmt.Errorf("want KIND MAX SETTLE NAME, got %q", args)
	}
	k := Kind(args[0])
	if !k.valid() {
		return "", Options{}, fmt.Errorf("unknown kind %q", args[0])
	}
	max, err := time.ParseDuration(args[1])
	if err != nil || max <= 0 {
		return "", Options{}, fmt.Errorf("bad limit %q", args[1])
	}
	settle, err := time.ParseDuration(args[2])
	if err != nil || settle <= 0 {
		return "", Options{}, fmt.Errorf("bad settle time %q", args[2])
	}
	return k, Options{Max: max, Settle: settle, Name: args[3]}, nil
}
