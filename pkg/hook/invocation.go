// Package hook reads how LXC invoked a hook program: which hook type, for
// which container, under which lxc.hook.version, and where the container's
// mount namespace is for the stop hook.
//
// It is pure parsing of arguments and environment, so it is tested without
// root and without LXC.
package hook

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Type is an LXC hook type, as LXC spells it in LXC_HOOK_TYPE and in the
// third trailing argument of a version 0 hook.
type Type string

// The hook types LXC knows. Only PreMount, Stop and PostStop do work here;
// the others are named so that a misplaced hook line gets a precise error.
const (
	PreStart  Type = "pre-start"
	PreMount  Type = "pre-mount"
	Mount     Type = "mount"
	Autodev   Type = "autodev"
	StartHost Type = "start-host"
	Start     Type = "start"
	Stop      Type = "stop"
	PostStop  Type = "post-stop"
	Clone     Type = "clone"
	Destroy   Type = "destroy"
)

var knownTypes = map[Type]bool{
	PreStart: true, PreMount: true, Mount: true, Autodev: true, StartHost: true,
	Start: true, Stop: true, PostStop: true, Clone: true, Destroy: true,
}

// ErrNotUnderLXC means the program was run by hand: no LXC environment and no
// trailing hook arguments. Callers print usage and exit 2.
var ErrNotUnderLXC = errors.New("not run by LXC: no LXC_NAME in the environment and no hook arguments")

// Invocation is everything LXC told the hook about this call.
type Invocation struct {
	// Version is lxc.hook.version: 0 (arguments appended) or 1 (environment only).
	Version int
	Type    Type
	// Name is the container name (LXC_NAME).
	Name string
	// ConfigFile is LXC_CONFIG_FILE, the container's config path.
	ConfigFile string
	// RootfsPath is lxc.rootfs.path with its "dir:" prefix removed.
	RootfsPath string
	// RootfsMount is LXC_ROOTFS_MOUNT, where LXC mounts the rootfs (the same
	// path for every container).
	RootfsMount string
	// LogLevel is LXC_LOG_LEVEL as LXC passes it (e.g. "ERROR"), or "".
	LogLevel string
	// MountNS is the path of the container's mount namespace for the stop
	// hook ("/proc/PID/fd/N"), or "" when LXC passed none. Never set for
	// post-stop: LXC leaves LXC_MNT_NS stale there.
	MountNS string
}

// Env looks up an environment variable; os.Getenv fits.
type Env func(key string) string

// Parse reads the invocation from the positional arguments left after the
// program's own flags and from the environment.
//
// Version 0 appends "NAME lxc TYPE" and, for the stop hook, one
// "ns:/proc/PID/fd/N" argument per namespace. Version 1 appends nothing and
// passes LXC_HOOK_TYPE, LXC_HOOK_SECTION and LXC_*_NS instead.
func Parse(positional []string, env Env) (*Invocation, error) {
	if env("LXC_NAME") == "" && len(positional) == 0 {
		return nil, ErrNotUnderLXC
	}
	inv := &Invocation{
		Name:        env("LXC_NAME"),
		ConfigFile:  env("LXC_CONFIG_FILE"),
		RootfsMount: env("LXC_ROOTFS_MOUNT"),
		LogLevel:    env("LXC_LOG_LEVEL"),
	}
	switch v := env("LXC_HOOK_VERSION"); v {
	case "", "0":
		inv.Version = 0
	case "1":
		inv.Version = 1
	default:
		return nil, fmt.Errorf("LXC_HOOK_VERSION %q: only lxc.hook.version 0 and 1 exist", v)
	}

	var nsArgs []string
	if inv.Version == 0 {
		if len(positional) < 3 {
			return nil, fmt.Errorf("hook arguments %q: lxc.hook.version 0 appends NAME lxc TYPE; got %d argument(s)", strings.Join(positional, " "), len(positional))
		}
		if i := hookArgsAt(positional, inv.Name); i > 0 {
			return nil, fmt.Errorf("unexpected argument %q on the hook line before %q: a flag given an empty value, or a value with spaces left unquoted?", positional[0], strings.Join(positional[i:], " "))
		}
		// LXC appends the name unquoted, so sh splits a name with spaces
		// into words; LXC_NAME has it whole.
		n := nameWords(positional, 0, inv.Name)
		if n == 0 || n+2 > len(positional) {
			n = 1
		}
		name, section, typ := strings.Join(positional[:n], " "), positional[n], positional[n+1]
		if n > 1 {
			name = inv.Name
		}
		positional = append([]string{name}, positional[n:]...)
		if section != "lxc" {
			return nil, fmt.Errorf("hook arguments %q: the second must be the section \"lxc\", got %q (an unknown word on the hook line?)", strings.Join(positional, " "), section)
		}
		if inv.Name == "" {
			inv.Name = name
		} else if name != inv.Name {
			return nil, fmt.Errorf("hook arguments %q: container name %q differs from LXC_NAME %q (an unknown word on the hook line?)", strings.Join(positional, " "), name, inv.Name)
		}
		inv.Type = Type(typ)
		nsArgs = positional[3:]
	} else {
		if len(positional) > 0 {
			return nil, fmt.Errorf("unexpected argument %q: lxc.hook.version 1 passes nothing on the command line", positional[0])
		}
		inv.Type = Type(env("LXC_HOOK_TYPE"))
		if inv.Type == "" {
			return nil, errors.New("LXC_HOOK_TYPE is empty under lxc.hook.version 1")
		}
	}
	if !knownTypes[inv.Type] {
		return nil, fmt.Errorf("hook type %q is not an LXC hook type", inv.Type)
	}
	if inv.Name == "" {
		return nil, errors.New("no container name: LXC_NAME is empty")
	}

	rootfs, err := StripRootfsPrefix(env("LXC_ROOTFS_PATH"))
	if err != nil {
		return nil, err
	}
	inv.RootfsPath = rootfs

	if inv.Type == Stop {
		if inv.Version == 0 {
			for _, a := range nsArgs {
				if p, ok := strings.CutPrefix(a, "mnt:"); ok {
					inv.MountNS = p
				}
			}
		} else {
			inv.MountNS = env("LXC_MNT_NS")
		}
	} else if inv.Version == 0 && len(nsArgs) > 0 {
		return nil, fmt.Errorf("unexpected argument %q after %q", nsArgs[0], strings.Join(positional[:3], " "))
	}
	return inv, nil
}

// RunByLXC reports whether LXC ran the program as a hook: LXC sets LXC_NAME
// for every hook (and LXC_HOOK_TYPE under version 1), and version 0
// appends "NAME lxc TYPE". A person running the binary by hand has none of
// these, so only then is a first word an operator command (or a mistyped
// one), never hook arguments.
func RunByLXC(args []string, env Env) bool {
	return env("LXC_NAME") != "" || env("LXC_HOOK_TYPE") != "" || hookArgsAt(args, "") >= 0
}

// hookArgsAt finds where "NAME lxc TYPE" starts in positional, or -1.
func hookArgsAt(positional []string, name string) int {
	for i := 0; i < len(positional); i++ {
		if n := nameWords(positional, i, name); n > 0 && i+n+1 < len(positional) && positional[i+n] == "lxc" && knownTypes[Type(positional[i+n+1])] {
			return i
		}
	}
	return -1
}

// nameWords returns how many words at positional[i:] are the container
// name as sh split it (one for any word when name is unknown), or 0.
func nameWords(positional []string, i int, name string) int {
	if name == "" {
		if i < len(positional) {
			return 1
		}
		return 0
	}
	words := strings.Fields(name)
	if len(words) == 0 || i+len(words) > len(positional) {
		return 0
	}
	for k, w := range words {
		if positional[i+k] != w {
			return 0
		}
	}
	return len(words)
}

// LocateHookArgs returns args from where LXC's "NAME lxc ..." starts (the
// name as sh split it), or nil.
func LocateHookArgs(args []string, name string) []string {
	for i := range args {
		if n := nameWords(args, i, name); n > 0 && i+n+1 < len(args) && args[i+n] == "lxc" {
			return args[i:]
		}
	}
	return nil
}

// HookTypeIn returns the hook type in positional arguments that could not
// be parsed, for naming the hook in the error that says so.
func HookTypeIn(positional []string, name string) string {
	if i := hookArgsAt(positional, name); i >= 0 {
		return positional[i+nameWords(positional, i, name)+1]
	}
	return ""
}

// StripRootfsPrefix turns LXC_ROOTFS_PATH, which LXC passes verbatim with
// its storage prefix, into a directory path. Only directory rootfs work:
// the hooks mount the layered root onto that directory in pre-mount, and
// LXC then bind-mounts whatever is there.
func StripRootfsPrefix(p string) (string, error) {
	if p == "" {
		return "", errors.New("LXC_ROOTFS_PATH is empty: set lxc.rootfs.path = dir:/path/to/an/empty/directory")
	}
	if rest, ok := strings.CutPrefix(p, "dir:"); ok {
		p = rest
	} else if i := strings.IndexByte(p, ':'); i > 0 && !strings.Contains(p[:i], "/") {
		if typ := p[:i]; typ == "overlay" || typ == "overlayfs" {
			// Who gets here is nearly always lxc-copy -e: LXC saves the
			// ephemeral copy's config after the clone hook ran, from what
			// it read before, so the copy has LXC's overlay rootfs and the
			// source's hook lines. A dir: rootfs is not what that user
			// wants; a throw-away container of these hooks is.
			return "", fmt.Errorf("lxc.rootfs.path %q: storage type %q is not supported with these hooks, which stack their own writable layer over the template on a dir: rootfs; lxc-copy -e (LXC's ephemeral copy) makes such a config and cannot be used with them: for a throw-away container use \"init NAME --template FILE --ephemeral\" of this hook binary, or its \"copy SRC DST\" and --ephemeral on the copy's hook lines", p, typ)
		}
		return "", fmt.Errorf("lxc.rootfs.path %q: storage type %q is not supported with these hooks; use dir:/path/to/an/empty/directory", p, p[:i])
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("lxc.rootfs.path %q is not an absolute path", p)
	}
	return filepath.Clean(p), nil
}
