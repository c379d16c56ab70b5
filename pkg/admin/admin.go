// Package admin holds the operator commands the hook binaries answer when
// a person runs them (LXC runs them as hooks): init writes a complete
// container config, status shows what the hooks hold, resize grows a cap,
// release frees what a stopped container still holds.
package admin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lxc-hooks/lxc-hooks/pkg/dirlayer"
	"github.com/lxc-hooks/lxc-hooks/pkg/execs"
	"github.com/lxc-hooks/lxc-hooks/pkg/freeze"
	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/loopimg"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
)

// Kind is which hook binary runs the command.
type Kind struct {
	Program string // lxc-hook-overlay, lxc-hook-loopimg, lxc-hook-aufs
	// Image is true for lxc-hook-loopimg (an image layer with a cap).
	Image bool
}

// command is one operator command of the hook binaries.
type command struct {
	name string
	// imageOnly: only lxc-hook-loopimg has it (an image layer with a cap).
	imageOnly bool
	run       func(k Kind, args []string, stdout, stderr io.Writer) error
}

// commandTable is every operator command, in the order --help, the man
// page and the unknown-command message list them: all of those are
// generated from it, so none can drift from what Main runs. (Set in init:
// manpage's entry reads the table.)
var commandTable []command

func init() {
	commandTable = []command{
		{name: "init", run: cmdInit},
		{name: "status", run: cmdStatus},
		{name: "resize", imageOnly: true, run: func(k Kind, args []string, stdout, _ io.Writer) error { return cmdResize(k, args, stdout) }},
		{name: "release", run: func(k Kind, args []string, stdout, _ io.Writer) error { return cmdRelease(k, args, stdout) }},
		{name: "copy", run: cmdCopy},
		{name: "template", run: func(k Kind, args []string, stdout, _ io.Writer) error { return cmdTemplate(k, args, stdout) }},
		{name: "convert", run: cmdConvert},
		{name: "migrate", run: func(k Kind, args []string, stdout, _ io.Writer) error { return cmdMigrate(k, args, stdout) }},
		{name: "lxc-template", run: cmdLXCTemplate},
		{name: "completion", run: cmdCompletion},
		{name: "manpage", run: func(k Kind, args []string, stdout, _ io.Writer) error { return cmdManpage(k, args, stdout) }},
	}
}

// notHere says why a command of another binary is not one of k's.
var notHere = map[string]string{
	"resize": "only lxc-hook-loopimg's image layers have a cap to resize",
}

// commands lists the commands binary k has.
func commands(k Kind) []command {
	var out []command
	for _, c := range commandTable {
		if !c.imageOnly || k.Image {
			out = append(out, c)
		}
	}
	return out
}

// CommandNames are the commands binary k has, in table order.
func CommandNames(k Kind) []string {
	var out []string
	for _, c := range commands(k) {
		out = append(out, c.name)
	}
	return out
}

// Run is a hook binary's main: the hook when LXC runs it, an operator
// command when a person does.
func Run(b runner.Backend, hasImage bool) int {
	if freeze.IsWatchdog() {
		// A copy's freeze watchdog (this binary again): nothing else runs.
		return freeze.WatchdogMain()
	}
	args := os.Args[1:]
	k := Kind{Program: b.Program(), Image: hasImage}
	HookHelp = func(w io.Writer) { runner.Usage(b, w) }
	// --help's "Run by hand" line, from the same table.
	runner.HandCommands = CommandNames(k)
	// lxc-create -t hooks-loopimg runs the link of that name.
	if filepath.Base(os.Args[0]) == TemplateName(k.Program) {
		return Main(k, append([]string{"lxc-template"}, args...), os.Stdout, os.Stderr)
	}
	if isCloneHook(args, os.Getenv) {
		return CloneHook(b.Program(), b.Category(), os.Stderr)
	}
	// Hook arguments are only tried on what LXC ran: by hand, a first
	// word is a command, or a mistyped one, never "NAME lxc TYPE".
	if !hook.RunByLXC(args, os.Getenv) && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return Main(k, args, os.Stdout, os.Stderr)
	}
	return runner.Main(b, args, os.Stdout, os.Stderr)
}

// Main runs the command in args[0] and returns the exit status: 0, 1 when
// the command failed, 2 for a usage error (an unknown command or flag).
func Main(k Kind, args []string, stdout, stderr io.Writer) int {
	var cmd *command
	for _, c := range commands(k) {
		if c.name == args[0] {
			cmd = &c
			break
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "%s: %s\n", k.Program, unknownCommand(k, args[0]))
		return 2
	}
	err := cmd.run(k, args[1:], stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "%s %s: %v\n", k.Program, args[0], ue.err)
		return 2
	}
	var reported reportedError
	if errors.As(err, &reported) {
		return 1 // the command has printed what failed
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", k.Program, args[0], err)
		return 1
	}
	return 0
}

// reportedError is a failure the command has already printed (per
// container, say): Main only turns it into the exit status.
type reportedError struct{ err error }

func (r reportedError) Error() string { return r.err.Error() }

// unknownCommand is the one line for a word that is none of k's commands:
// the closest command when the word looks like a typo of one, and the list.
func unknownCommand(k Kind, word string) string {
	names := CommandNames(k)
	list := strings.Join(names, ", ")
	if why, ok := notHere[word]; ok {
		return fmt.Sprintf("%s has no command %s: %s (commands: %s; each with --help)", k.Program, word, why, list)
	}
	msg := fmt.Sprintf("unknown command %s", word)
	if s := suggest(word, names); s != "" {
		msg += "; did you mean " + s + "?"
	}
	return msg + fmt.Sprintf(" (commands: %s; each with --help; as an LXC hook: %s --help)", list, k.Program)
}

// suggest is the command word most likely meant: the only one that starts
// with it, else the nearest within two edits (a swap of neighbours counts
// one).
func suggest(word string, names []string) string {
	if len(word) >= 2 {
		var starts []string
		for _, n := range names {
			if strings.HasPrefix(n, word) {
				starts = append(starts, n)
			}
		}
		if len(starts) == 1 {
			return starts[0]
		}
	}
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(word, n); d < bestD && d < len(n) {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent letters.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }

// flags makes a command's flag set; --help prints its usage on stdout.
func flags(k Kind, name, synopsis, about string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(k.Program+" "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: %s %s %s\n\n%s\n\nFlags:\n", k.Program, name, synopsis, about)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// inspectFlags, when set, is handed a command's flag set, with every flag
// defined, at its parse, which then stops the command there: the
// completion script is written from the flag sets the commands run with.
var inspectFlags func(*flag.FlagSet)

// parse parses flags and positional arguments in any order (Go's flag
// package stops at the first positional one).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	if inspectFlags != nil {
		inspectFlags(fs)
		return nil, flag.ErrHelp
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err // the flag package has printed the usage
			}
			return nil, usageError{fmt.Errorf("%s (see --help)", strings.TrimPrefix(err.Error(), "flag provided but not defined: "))}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// defaultLXCPath is LXC's own lxc.lxcpath.
func defaultLXCPath() string {
	if out, err := execs.Run(10*time.Second, "install lxc", "lxc-config", "lxc.lxcpath"); err == nil {
		if p := strings.TrimSpace(out); p != "" {
			return p
		}
	}
	return "/var/lib/lxc"
}

// container is one container under an lxcpath whose config uses the hooks.
type container struct {
	Name    string
	LXCPath string
	Dir     string
	Config  string
	Hook    hookLine
	// Err is why the config could not be read (status lists it anyway).
	Err error
}

// hookLine is what a container's hook line says (the same line is on each
// hook key it uses: hook.LineKeys).
type hookLine struct {
	Program string // base name of the binary
	Binary  string
	Lowers  []string
	// LowersGiven: Lowers come from --lower (else they are the rootfs
	// directory, LXC's own, which the hooks use as it is).
	LowersGiven bool
	Upper       string // overlay, aufs
	Image       string // loopimg
	Size        string
	Preallocate bool
	RunDir      string
	Config      string // --config: the config the line was written for
	Ephemeral   bool
}

// errNotOurs is a hook line of another program.
var errNotOurs = errors.New("not an lxc-hook-* line")

// parseHookLine reads a hook line with the hook's own flag definitions and
// defaults (runner.ParseFlags with the backends' Flags types), so status
// and resize see exactly what the hook will use.
func parseHookLine(line, configFile string) (hookLine, error) {
	words, err := hook.SplitWords(line)
	if err != nil {
		if !strings.Contains(line, "lxc-hook-") {
			return hookLine{}, errNotOurs // another program's line, however it is written
		}
		return hookLine{}, err
	}
	if len(words) == 0 {
		return hookLine{}, errNotOurs
	}
	h := hookLine{Program: filepath.Base(words[0]), Binary: words[0]}
	var register func(*flag.FlagSet)
	var validate func(string) error
	var li loopimg.Flags
	var dl dirlayer.Flags
	switch h.Program {
	case "lxc-hook-loopimg":
		register, validate = li.Register, li.Validate
	case "lxc-hook-overlay", "lxc-hook-aufs":
		aufs := h.Program == "lxc-hook-aufs"
		register = func(fs *flag.FlagSet) { dl.Register(fs, aufs) }
		validate = func(cfg string) error { return dl.Validate(cfg, aufs) }
	default:
		return hookLine{}, errNotOurs
	}
	common, err := runner.ParseFlags(words[1:], configFile, register, validate)
	if err != nil {
		return hookLine{}, err
	}
	h.Lowers, h.RunDir, h.Config = []string(common.Lowers), common.RunDir, common.Config
	h.LowersGiven = len(h.Lowers) > 0
	h.Image, h.Size, h.Preallocate, h.Upper = li.Image, li.SizeFlag, li.Preallocate, dl.Upper
	h.Ephemeral = li.Ephemeral || dl.Ephemeral
	if dl.Size != "" {
		h.Size = dl.Size
	}
	return h, nil
}

// loadContainer reads lxcpath/name; an error when it does not use the hooks.
func loadContainer(lxcpath, name string) (*container, error) {
	return loadConfig(lxcpath, name, filepath.Join(lxcpath, name, "config"))
}

// loadConfig reads the container config cfg.
func loadConfig(lxcpath, name, cfg string) (*container, error) {
	f, err := os.Open(cfg)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("container %q: no config at %s", name, cfg)
		}
		return nil, err
	}
	v := hook.ConfigValues(f, append([]string{"lxc.rootfs.path"}, hook.LineKeys...)...)
	f.Close()
	// A container may have several hooks on a key; ours is the one named
	// lxc-hook-*: on pre-mount (privileged), pre-start (unprivileged), or
	// stop and post-stop.
	for _, key := range hook.LineKeys {
		for _, line := range v[key] {
			h, err := parseHookLine(line, cfg)
			if errors.Is(err, errNotOurs) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("container %q (%s): %s = %s: %w", name, cfg, key, line, err)
			}
			if len(h.Lowers) == 0 {
				if rootfs := strings.TrimPrefix(hook.Last(v["lxc.rootfs.path"]), "dir:"); rootfs != "" {
					h.Lowers = []string{rootfs}
				}
			}
			return &container{Name: name, LXCPath: lxcpath, Dir: filepath.Dir(cfg), Config: cfg, Hook: h}, nil
		}
	}
	return nil, fmt.Errorf("container %q (%s) does not use an lxc-hook-* on lxc.hook.pre-mount, lxc.hook.pre-start or lxc.hook.stop", name, cfg)
}

// containers lists the containers under lxcpath that use the hooks. A
// container whose config names one of the hooks but cannot be read is
// listed too, with Err set: a listing that silently leaves out the one
// container that is broken hides exactly what its reader looks for.
func containers(lxcpath string) ([]*container, error) {
	if _, err := os.Stat(lxcpath); err != nil {
		return nil, err
	}
	var out []*container
	for _, name := range holders.Names(lxcpath) {
		c, err := loadContainer(lxcpath, name)
		if err == nil {
			out = append(out, c)
		} else if mentionsHooks(filepath.Join(lxcpath, name, "config")) {
			out = append(out, &container{Name: name, LXCPath: lxcpath, Dir: filepath.Join(lxcpath, name), Config: filepath.Join(lxcpath, name, "config"), Err: err})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// mentionsHooks reports whether a config has a hook line naming one of the
// hook binaries.
func mentionsHooks(cfg string) bool {
	f, err := os.Open(cfg)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, line := range hook.HookLines(f) {
		if strings.Contains(line, "lxc-hook-") {
			return true
		}
	}
	return false
}

// lxcInfo asks LXC for a container's state and init PID.
func (c *container) info() (state string, pid int) {
	out, err := execs.Run(10*time.Second, "install lxc", "lxc-info", "-n", c.Name, "-P", c.LXCPath, "-sH")
	if err != nil {
		return "UNKNOWN", 0
	}
	state = strings.TrimSpace(out)
	if state == "RUNNING" || state == "FROZEN" {
		if out, err := execs.Run(10*time.Second, "install lxc", "lxc-info", "-n", c.Name, "-P", c.LXCPath, "-pH"); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(out))
		}
	}
	return state, pid
}
