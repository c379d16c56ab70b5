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

// Commands are the words that make a hook binary an operator command.
var Commands = []string{"init", "status", "resize", "release", "copy", "template", "manpage"}

// IsCommand reports whether args ask for an operator command rather than a
// hook run: the first argument is a command word and LXC did not run us.
func IsCommand(args []string, getenv func(string) string) bool {
	if len(args) == 0 || getenv("LXC_NAME") != "" || getenv("LXC_HOOK_TYPE") != "" {
		return false
	}
	for _, c := range Commands {
		if args[0] == c {
			return true
		}
	}
	return false
}

// Run is a hook binary's main: an operator command when a person runs it
// with one, the hook otherwise.
func Run(b runner.Backend, hasImage bool) int {
	args := os.Args[1:]
	if IsCommand(args, os.Getenv) {
		HookHelp = func(w io.Writer) { runner.Usage(b, w) }
		return Main(Kind{Program: b.Program(), Image: hasImage}, args, os.Stdout, os.Stderr)
	}
	if isCloneHook(args, os.Getenv) {
		return CloneHook(b.Program(), b.Category(), os.Stderr)
	}
	return runner.Main(b, args, os.Stdout, os.Stderr)
}

// Main runs the command in args[0] and returns the exit status.
func Main(k Kind, args []string, stdout, stderr io.Writer) int {
	var err error
	switch args[0] {
	case "init":
		err = cmdInit(k, args[1:], stdout)
	case "status":
		err = cmdStatus(k, args[1:], stdout)
	case "resize":
		err = cmdResize(k, args[1:], stdout)
	case "release":
		err = cmdRelease(k, args[1:], stdout)
	case "copy":
		err = cmdCopy(k, args[1:], stdout, os.Stderr)
	case "manpage":
		err = cmdManpage(k, stdout)
	case "template":
		err = cmdTemplate(k, args[1:], stdout)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "%s %s: %v\n", k.Program, args[0], ue.err)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", k.Program, args[0], err)
		return 1
	}
	return 0
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

// parse parses flags and positional arguments in any order (Go's flag
// package stops at the first positional one).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
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

// hookLine is what a container's lxc.hook.pre-mount line says.
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
	v := hook.ConfigValues(f, "lxc.hook.pre-mount", "lxc.rootfs.path")
	f.Close()
	// A container may have several pre-mount hooks; ours is the one named
	// lxc-hook-*.
	for _, line := range v["lxc.hook.pre-mount"] {
		h, err := parseHookLine(line, cfg)
		if errors.Is(err, errNotOurs) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("container %q (%s): lxc.hook.pre-mount = %s: %w", name, cfg, line, err)
		}
		if len(h.Lowers) == 0 {
			if rootfs := strings.TrimPrefix(hook.Last(v["lxc.rootfs.path"]), "dir:"); rootfs != "" {
				h.Lowers = []string{rootfs}
			}
		}
		return &container{Name: name, LXCPath: lxcpath, Dir: filepath.Dir(cfg), Config: cfg, Hook: h}, nil
	}
	return nil, fmt.Errorf("container %q (%s) does not use an lxc-hook-* on lxc.hook.pre-mount", name, cfg)
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
	for _, line := range hook.ConfigValues(f, "lxc.hook.pre-mount")["lxc.hook.pre-mount"] {
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
	if state == "RUNNING" {
		if out, err := execs.Run(10*time.Second, "install lxc", "lxc-info", "-n", c.Name, "-P", c.LXCPath, "-pH"); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(out))
		}
	}
	return state, pid
}
