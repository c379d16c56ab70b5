// Hook binaries.
//
// Whether a hook binary is one that only root can change. LXC runs every
// hook line as host root at every start, stop and copy: a line naming a binary that some user can replace (a build in a
// home directory, a checkout owned by a user, a file in a group-writable
// directory) lets that user run code as root. A path is trusted when the
// file and every directory on the way to it, and every symlink followed,
// are owned by root and writable by no group and no others. A root-owned
// sticky directory (/tmp) may stand on the way: there others cannot
// rename or remove what root owns. (Files of the user running the check
// count as root's: to a non-root user running its own build, the unit
// tests, its files are as safe as root's; to root, only root's are.)
//
// The check is the same for init (the path it writes), copy and the clone
// hook (the paths the new config names), status (every hook line of ours)
// and the hooks themselves at start (their own executable). It is stricter
// than the rule for layers (doc.go): no group may write, gid 0's included,
// and a FUSE filesystem proves nothing; and it only checks (LXC, not the
// hooks, runs the file), so it walks by lstat rather than by fds.

package trust

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// InstallFix is the remedy every refusal gives.
const InstallFix = "install the hooks into root-owned directories with make install (binaries in /usr/bin, links in /usr/share/lxc/hooks; PREFIX=/usr/local or another root-owned prefix works too) or the lxc-hooks package, and use the installed binary"

// Error says why a path is not trusted.
type BinaryError struct {
	Path string // the path asked about
	// At is the file, directory or symlink at fault (Path itself or one
	// on the way to it).
	At string
	// Owner and Mode are At's, as lstat saw them.
	Owner uint32
	Mode  os.FileMode
	Why   string // what is wrong with At
}

// Is makes errors.Is(err, ErrUntrusted) true for a binary too.
func (e *BinaryError) Is(target error) bool { return target == ErrUntrusted }

func (e *BinaryError) Error() string {
	if e.At == "" {
		return fmt.Sprintf("%s: %s", e.Path, e.Why)
	}
	return fmt.Sprintf("%s can be replaced by a non-root user: %s (owner %s, mode %s) %s", e.Path, e.At, ownerNameUID(e.Owner), e.Mode, e.Why)
}

// ownerName is "uid 1000 (alice)"; the name from /etc/passwd, read only
// for an error (os/user would link a larger resolver into every hook).
func ownerNameUID(uid uint32) string {
	s := "uid " + strconv.FormatUint(uint64(uid), 10)
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), ":")
		if len(p) > 2 && p[2] == strconv.FormatUint(uint64(uid), 10) {
			return s + " (" + p[0] + ")"
		}
	}
	return s
}

// HookRefusal is the line a hook logs when Running refuses its binary;
// refused is false for the stop hooks, which still clean up (refusing
// would leave the container's mounts and loop devices behind, and the
// binary has already run) while the next start is refused.
func HookRefusal(err error, refused bool) string {
	what := "the hook is refused"
	if !refused {
		what = "it cleans up this once, but starts are refused"
	}
	return fmt.Sprintf("%v; LXC runs this binary as root at every start, stop and copy, so %s: %s, and name it on the hook lines (%s)", err, what, InstallFix, "\"init\" of the installed binary writes them")
}
