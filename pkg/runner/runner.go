// Package runner is the life cycle every hook shares: read how LXC invoked
// it, log where the user reads, and dispatch the one hook process of a
// start (pre-mount builds the layered root inside the container's mount
// namespace; for an unprivileged container pre-start builds it and attaches
// it where LXC takes it) and the one of a stop (stop unmounts it inside the
// container's namespace, then verifies every loop device is gone and names
// who holds one that is not).
// The binaries differ only in their Backend: where the writable layer lives
// and which union filesystem stacks it.
package runner

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/killpoint"
	"github.com/lxc-hooks/lxc-hooks/pkg/lxclog"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// HandCommands are the operator commands the binary answers when a person
// runs it, for --help's "Run by hand" line; set by the binary's main from
// its command table (package admin), so the line cannot drift from it.
var HandCommands []string

// Version is set at build time with -ldflags "-X ...runner.Version=v1".
var Version = "dev"

// Backend is what makes one hook binary different from the others.
type Backend interface {
	// Program is the binary's name, e.g. "lxc-hook-overlay".
	Program() string
	// Category is the short name in LXC log lines, e.g. "overlay".
	Category() string
	// Synopsis is the usage line's argument part.
	Synopsis() string
	// Description is the help text's paragraph.
	Description() string
	// RegisterFlags adds the backend's flags.
	RegisterFlags(fs *flag.FlagSet)
	// Validate checks the backend's flags before anything is touched and
	// fills in defaults; configFile is the container's LXC config (its
	// directory holds the writable layer when no flag says where).
	Validate(configFile string) error
	// PrepareWritable makes the writable layer ready inside the
	// container's mount namespace (pre-mount) and says where its upper and
	// work directories are. Loop devices it attaches go into c.Record; it
	// pushes undo steps onto c.Undo.
	PrepareWritable(c *Context) (*Writable, error)
	// MountUnion stacks lowers (topmost first) under w at target.
	MountUnion(c *Context, lowers []string, w *Writable, target string) error
	// MountSource is the source name the backend's union mount carries, so
	// that stop can tell it from LXC's own mounts.
	MountSource() string
}

// AfterStopper is a Backend with cleanup of its own at the end of the stop
// hook, after the loop devices were verified (idempotent: the stop hook
// may run again, and after a failed start).
type AfterStopper interface {
	AfterStop(c *Context)
}

// Writable is a prepared writable layer.
type Writable struct {
	Root  string // holds the marker, upper and work
	Upper string
	Work  string
	// Dir is Root, open and checked by the backend (nil: opened again
	// where needed); the runner closes it once the layer is checked.
	Dir *trust.Dir
}

// Context is one hook run.
type Context struct {
	Inv    *hook.Invocation
	Log    *logrus.Entry
	Common *Common
	Run    state.Dir
	Record *state.Record
	// Undo holds the steps that take back a failed pre-mount, run last
	// first.
	Undo []func()
	// phases is where the run's time went, for the debug "done" line
	// (and the benchmarks' report): Mark ends a phase.
	phases   []string
	lastMark time.Time
	// lowerFiles are the template images resolveLowers checked, open.
	lowerFiles map[int]*os.File
}

// Mark ends the phase name: the time since the previous mark goes to it.
func (c *Context) Mark(name string) {
	now := time.Now()
	c.phases = append(c.phases, fmt.Sprintf("%s:%.2f", name, float64(now.Sub(c.lastMark))/float64(time.Millisecond)))
	c.lastMark = now
}

// PushUndo registers a step to take back if pre-mount fails later.
func (c *Context) PushUndo(f func()) { c.Undo = append(c.Undo, f) }

func (c *Context) undo() {
	for i := len(c.Undo) - 1; i >= 0; i-- {
		c.Undo[i]()
	}
	c.Undo = nil
}

// Main runs a hook binary and returns its exit status.
func Main(b Backend, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == idmap.HolderArg {
		// The placeholder process of a user namespace (idmap.NewUserNS),
		// started from this binary: never an LXC invocation.
		return idmap.HoldUntilEOF()
	}
	started := time.Now()
	tuneRuntime()
	common := &Common{}
	fs := flag.NewFlagSet(b.Program(), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	common.register(fs)
	b.RegisterFlags(fs)
	usage := func(w io.Writer) { printUsage(b, fs, w) }

	parseErr := fs.Parse(args)
	if parseErr == nil && common.Help {
		usage(stdout)
		return 0
	}
	if parseErr == nil && common.Version {
		fmt.Fprintln(stdout, VersionLine(b.Program()))
		return 0
	}
	if errors.Is(parseErr, flag.ErrHelp) {
		usage(stdout)
		return 0
	}

	positional := fs.Args()
	if parseErr != nil {
		positional = locateHookArgs(args, os.Getenv("LXC_NAME"))
		if os.Getenv("LXC_HOOK_VERSION") == "1" {
			positional = nil
		}
	}
	inv, invErr := hook.Parse(positional, os.Getenv)
	if errors.Is(invErr, hook.ErrNotUnderLXC) {
		if parseErr != nil {
			fmt.Fprintf(stderr, "%s: %v\n", b.Program(), flagError(parseErr))
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", b.Program(), invErr)
		}
		usage(stderr)
		return 2
	}

	logOpts := lxclog.Options{
		Program: b.Program(), Category: b.Category(), ParentPID: hostParentPID(),
		FlagLevel: common.LogLevel, Stderr: stderr,
		Container: os.Getenv("LXC_NAME"), ConfigFile: os.Getenv("LXC_CONFIG_FILE"), EnvLevel: os.Getenv("LXC_LOG_LEVEL"),
	}
	if inv != nil {
		logOpts.Container, logOpts.Hook = inv.Name, string(inv.Type)
	} else if t := os.Getenv("LXC_HOOK_TYPE"); t != "" {
		logOpts.Hook = t
	} else {
		logOpts.Hook = hook.HookTypeIn(positional, os.Getenv("LXC_NAME"))
	}
	log, closer, err := lxclog.New(logOpts)
	if err != nil {
		// Only --log-level can fail here; log at LXC's level instead.
		logOpts.FlagLevel = ""
		log, closer, _ = lxclog.New(logOpts)
		log.Error(err)
		return failStatus(logOpts.Hook)
	}
	defer closer.Close()
	// Root running a binary a user can replace runs that user's code.
	if err := trust.Running(); err != nil {
		log.Error(trust.HookRefusal(err, failStatus(logOpts.Hook) != 0))
		if failStatus(logOpts.Hook) != 0 {
			return 1
		}
	}

	if parseErr != nil {
		log.Error(flagError(parseErr))
		return failStatus(logOpts.Hook)
	}
	if invErr != nil {
		log.Error(invErr)
		return failStatus(logOpts.Hook)
	}
	if err := b.Validate(inv.ConfigFile); err != nil {
		log.Error(err)
		return failStatus(logOpts.Hook)
	}

	killpoint.Arm(string(inv.Type)) // test-only, no-op without its variable
	c := &Context{
		Inv: inv, Log: log, Common: common,
		Run: state.For(common.RunDir, inv.Name, inv.ConfigFile),
	}
	c.lastMark = started
	c.Mark("setup")
	done := func() {
		// The benchmarks read this line; at debug level a sysadmin sees
		// what each hook run costs, and where it went (ms per phase).
		c.Mark("rest")
		var ru unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		// faults: the pages this process touched first (minor faults),
		// which on a paravirtualized guest cost more than the work.
		log.WithField("took", time.Since(started).Round(10*time.Microsecond)).WithField("cpu", cpu.Round(10*time.Microsecond)).
			WithField("faults", ru.Minflt).WithField("phases", strings.Join(c.phases, ",")).Debugf("%s done", inv.Type)
	}
	switch inv.Type {
	case hook.PreStart:
		if err := preStart(b, c); err != nil {
			log.Error(err)
			return 1
		}
		done()
		return 0
	case hook.PreMount:
		if err := preMount(b, c); err != nil {
			log.Error(err)
			return 1
		}
		done()
		return 0
	case hook.Stop:
		stop(b, c)
		done()
		return 0
	case hook.PostStop:
		postStop(b, c)
		done()
		return 0
	case hook.Mount:
		log.Errorf("%s must run as lxc.hook.pre-mount, not lxc.hook.mount: in the mount hook LXC has already mounted the rootfs, and LXC 5 refuses to start a container whose rootfs was mounted over (\"Rootfs overmounted\")", b.Program())
		return 1
	default:
		log.Errorf("%s does nothing as lxc.hook.%s: use it as lxc.hook.pre-mount and lxc.hook.stop (unprivileged containers: lxc.hook.pre-start and lxc.hook.stop)", b.Program(), inv.Type)
		return 1
	}
}

// ParseFlags reads a hook line's flags (the words after the binary) the way
// the hook does: the common flags plus those register adds, then validate
// with the container's config (which fills in the defaults). For tools that
// read container configs; positional words are ignored.
func ParseFlags(args []string, configFile string, register func(*flag.FlagSet), validate func(configFile string) error) (*Common, error) {
	common := &Common{}
	fs := flag.NewFlagSet("hook line", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	common.register(fs)
	register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, flagError(err)
	}
	if err := validate(configFile); err != nil {
		return nil, err
	}
	return common, nil
}

// Usage prints the hook mode's help, as --help does.
func Usage(b Backend, w io.Writer) {
	fs := flag.NewFlagSet(b.Program(), flag.ContinueOnError)
	(&Common{}).register(fs)
	b.RegisterFlags(fs)
	printUsage(b, fs, w)
}

func printUsage(b Backend, fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: %s %s\n\n%s\n\nFlags:\n", b.Program(), b.Synopsis(), b.Description())
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprintf(w, "\nPut the same line on lxc.hook.pre-mount and lxc.hook.stop. Unprivileged containers\n(lxc.idmap): on lxc.hook.pre-start and lxc.hook.stop instead; the template is idmapped,\nnever chowned (Linux %s or newer).\n", MinKernel)
	if len(HandCommands) > 0 {
		fmt.Fprintf(w, "\nRun by hand: %s %s ... (each with --help)\n", b.Program(), strings.Join(HandCommands, "|"))
	}
}

// failStatus is the exit status for a hook that could not run: non-zero
// so LXC refuses a start, zero for the stop hooks, whose failure LXC only
// logs (the error is already in the log).
func failStatus(hookType string) int {
	switch hook.Type(hookType) {
	case hook.Stop, hook.PostStop:
		return 0
	}
	return 1
}

// pathIn reports whether p is dir or below it.
func pathIn(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// hostParentPID is the PID of the LXC process that ran the hook, as the
// host's /proc knows it. getppid() will not always do: pre-mount runs from
// the container's first process, which is PID 1 in the container's new PID
// namespace (getppid() says 1 there), while /proc (not yet replaced) is the
// host's: there, where this process's own PID differs from the one the
// host's /proc gives it, it is field 4 of /proc/self/stat.
func hostParentPID() int {
	if self, err := os.Readlink("/proc/self"); err == nil && self == strconv.Itoa(os.Getpid()) {
		return unix.Getppid()
	}
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold anything: fields
	// count from its closing one, where field 3 (state) begins.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// tuneRuntime fits the Go runtime to a hook run: a process of a few
// milliseconds, on every container start and stop, that allocates little.
// A garbage collection would only cost time (the process ends before the
// memory matters; the limit still bounds it), and the main goroutine's
// stack, started small, would be copied every time a deeper call needs
// more (logging, JSON): grown once here, while it is shallow.
func tuneRuntime() {
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(256 << 20)
	growStack()
}

//go:noinline
func growStack() {
	var pad [32 << 10]byte
	keep(pad[:])
}

//go:noinline
func keep([]byte) {}
