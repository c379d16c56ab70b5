package runner

import (
	"flag"
	"fmt"
	"strings"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// Common are the flags every hook takes.
type Common struct {
	Lowers   stringList
	LogLevel string
	Help     bool
	Version  bool
	// RunDir is where per-container runtime state lives (tests move it).
	RunDir string
	// Config is the container config this hook line was written for (init
	// writes it): a start from another config, i.e. a config copied by a
	// tool that copied no writable layer, is refused.
	Config string
}

func (c *Common) register(fs *flag.FlagSet) {
	fs.Var(&c.Lowers, "lower", "read-only `PATH`: a directory, or a squashfs, erofs or ext4 image file; repeatable, first is topmost (default: the directory lxc.rootfs.path names)")
	fs.StringVar(&c.LogLevel, "log-level", "", "`LEVEL` of detail (trace, debug, info, warn, error); default: LXC's own level")
	fs.StringVar(&c.RunDir, "run-dir", "/run/lxc-hooks", "`DIR` for per-container runtime state")
	fs.StringVar(&c.Config, "config", "", "`FILE`: the LXC config this line was written for (init writes it); a start from a config copied elsewhere without its layer is refused")
	fs.BoolVar(&c.Help, "help", false, "show this help")
	fs.BoolVar(&c.Version, "version", false, "print the version")
}

// flagError rewords the flag package's messages into one line that names
// the flag at fault.
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return fmt.Errorf("unknown flag %s (see --help)", dashes(name))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return fmt.Errorf("flag %s needs a value", dashes(name))
	}
	return fmt.Errorf("%s", strings.ReplaceAll(msg, "\n", " "))
}

func dashes(name string) string {
	return "--" + strings.TrimLeft(name, "-")
}

// locateHookArgs finds where LXC's trailing "NAME lxc TYPE" starts in an
// argument list whose flags could not be parsed, so a bad hook line is
// still reported in the right container's log.
func locateHookArgs(args []string, name string) []string {
	return hook.LocateHookArgs(args, name)
}
