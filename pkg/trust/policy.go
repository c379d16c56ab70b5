package trust

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// ErrUntrusted matches (errors.Is) every refusal of a path others can
// change.
var ErrUntrusted = errors.New("a path others can change")

// Role is what a checked entry is to the thing the hooks use.
type Role int

const (
	// Above is a directory on the way: a root-owned sticky one may be
	// writable by others.
	Above Role = iota
	// Itself is the layer directory, image or template: writable by root
	// alone.
	Itself
	// Link is a symbolic link on the way: only its owner matters (a
	// link's mode means nothing).
	Link
)

// Entry is the part of a stat result the rule looks at.
type Entry struct {
	Mode uint32 // st_mode, with the file type bits
	UID  uint32
	GID  uint32
}

const (
	sIFMT  = 0o170000
	sIFDIR = 0o040000
)

// Problem says what lets someone other than root change e, and the
// commands that fix it; "" when nothing does. self is the caller's
// effective uid, trusted like root.
func Problem(e Entry, r Role, self uint32) (problem, fix string) {
	var probs []string
	var chmod string
	owned := e.UID == 0 || e.UID == self
	if !owned {
		probs = append(probs, "is not owned by root")
	}
	if r != Link {
		perm := e.Mode & 0o7777
		// Others can add entries to a sticky directory but rename or
		// remove only their own: root's entries there stay root's.
		sticky := r == Above && owned && perm&0o1000 != 0 && e.Mode&sIFMT == sIFDIR
		if perm&0o002 != 0 && !sticky {
			probs = append(probs, "is writable by others")
			chmod += "o"
		}
		if perm&0o020 != 0 && e.GID != 0 && !sticky {
			probs = append(probs, "is writable by its group")
			chmod = "g" + chmod
		}
	}
	if len(probs) == 0 {
		return "", ""
	}
	var fixes []string
	if !owned {
		fixes = append(fixes, "chown root:root")
	}
	if chmod != "" {
		fixes = append(fixes, "chmod "+chmod+"-w")
	}
	return strings.Join(probs, " and "), strings.Join(fixes, " and ")
}

// Error is a path refused because someone other than root can change it.
type Error struct {
	What string // what the path is to the hooks: "--upper", "--image", "lower"
	Path string // the path as given
	At   string // the directory, file or link at fault: Path or one on the way
	Entry
	Problem string
	Fix     string // commands, each to be followed by At
	FUSE    bool   // At is on a FUSE filesystem: Problem and Fix unused
	// Unreadable: a FUSE mount root may not stat (no allow_other); Entry unset.
	Unreadable bool
}

func (e *Error) Error() string {
	if e.FUSE {
		subject := e.At
		if e.At == e.Path {
			subject = "it"
		}
		seen := fmt.Sprintf("here owner %s, mode %04o", ownerName(e.UID, e.GID), e.Mode&0o7777)
		if e.Unreadable {
			seen = "here not even readable by root: mounted without allow_other"
		}
		return fmt.Sprintf("%s %q is refused: %s is on a FUSE filesystem, whose owners and modes (%s) are whatever its user-space server says, so they prove nothing about who can change it; the hooks use a layer, image or template only on a kernel filesystem where it and every directory above it are owned by root and writable by root alone: move it there",
			e.What, e.Path, subject, seen)
	}
	subject := e.At
	if e.At == e.Path {
		subject = "it"
	}
	var fix []string
	for _, f := range strings.Split(e.Fix, " and ") {
		fix = append(fix, f+" "+quoteArg(e.At))
	}
	return fmt.Sprintf("%s %q is refused: %s %s (owner %s, mode %04o), so a user other than root could swap what the hooks use there for a link or a file of their own and have host root write, truncate, chown or mount something else; the hooks use a layer, image or template only where it and every directory above it are owned by root and writable by root alone (a root-owned sticky directory such as /tmp may stand above): %s, or move it under such a directory",
		e.What, e.Path, subject, e.Problem, ownerName(e.UID, e.GID), e.Mode&0o7777, strings.Join(fix, "; "))
}

// Is makes errors.Is(err, ErrUntrusted) true.
func (e *Error) Is(target error) bool { return target == ErrUntrusted }

// ownerName is "mallory (uid 1001, gid 1001)", or the bare ids when
// /etc/passwd does not know them.
func ownerName(uid, gid uint32) string {
	ids := fmt.Sprintf("uid %d, gid %d", uid, gid)
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username + " (" + ids + ")"
	}
	return ids
}

// quoteArg quotes p for a shell command line when it needs it.
func quoteArg(p string) string {
	if p != "" && strings.IndexFunc(p, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '+' || r == ':' || r == '@' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}
