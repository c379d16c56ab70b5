package idmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// ShiftID is the host ID that to gives the container ID that from maps
// host ID id to; ok is false when from does not map id (or to does not
// map what it is inside).
func ShiftID(from, to []Range, id uint32) (uint32, bool) {
	for _, r := range from {
		if id >= r.Outside && uint64(id) < uint64(r.Outside)+uint64(r.Count) {
			return toHost(to, r.Inside+(id-r.Outside))
		}
	}
	return 0, false
}

// ShiftStats counts what ShiftTree changed.
type ShiftStats struct {
	Files, Owners, ACLs, Caps int
}

// ShiftTree moves the files below root (root included), written by a
// container mapped with from, to the mapping to: each uid and gid that
// from maps is replaced with the one to maps the same container ID to;
// other IDs (host root's whiteouts, say) stay. It never follows a
// symbolic link (each entry is opened O_PATH|O_NOFOLLOW and changed
// through that fd) and never leaves root's filesystem. What chown(2)
// clears is put back: the setuid and setgid bits, and file capabilities
// (security.capability, whose namespaced form names the container's root
// and is shifted too); POSIX ACLs (system.posix_acl_access and _default)
// have their user and group entries shifted. Shifting twice is harmless:
// a shifted ID is no longer one from maps (the ranges must not overlap).
func ShiftTree(root string, from, to *Mapping) (ShiftStats, error) {
	var s ShiftStats
	fd, err := unix.Open(root, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return s, fmt.Errorf("shift %s: %w", root, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return s, fmt.Errorf("shift %s: %w", root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		unix.Close(fd)
		return s, fmt.Errorf("shift %s: not a directory", root)
	}
	sh := &shifter{from: from, to: to, dev: st.Dev, stats: &s}
	err = sh.entry(fd, root, &st)
	unix.Close(fd)
	return s, err
}

// ShiftOwner is ShiftTree for the file at path alone (not what is below
// it, if it is a directory).
func ShiftOwner(path string, from, to *Mapping) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("shift %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("shift %s: %w", path, err)
	}
	sh := &shifter{from: from, to: to, dev: st.Dev, stats: &ShiftStats{}}
	return sh.shiftOwner(fd, path, &st)
}

type shifter struct {
	from, to *Mapping
	dev      uint64
	stats    *ShiftStats
}

// entry shifts the file open as fd (O_PATH), and what is below it.
func (sh *shifter) entry(fd int, path string, st *unix.Stat_t) error {
	sh.stats.Files++
	if err := sh.shiftOwner(fd, path, st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("shift %s: %w", path, err)
	}
	dir := os.NewFile(uintptr(dfd), path)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("shift %s: %w", path, err)
	}
	for _, name := range names {
		p := filepath.Join(path, name)
		cfd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("shift %s: %w", p, err)
		}
		var cst unix.Stat_t
		if err := unix.Fstat(cfd, &cst); err != nil {
			unix.Close(cfd)
			return fmt.Errorf("shift %s: %w", p, err)
		}
		if cst.Dev != sh.dev {
			unix.Close(cfd)
			continue // a mount: not the layer's
		}
		err = sh.entry(cfd, p, &cst)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// Extended attributes that carry IDs.
const (
	capXattr        = "security.capability"
	aclAccessXattr  = "system.posix_acl_access"
	aclDefaultXattr = "system.posix_acl_default"
)

func (sh *shifter) shiftOwner(fd int, path string, st *unix.Stat_t) error {
	uid, uok := ShiftID(sh.from.UID, sh.to.UID, st.Uid)
	gid, gok := ShiftID(sh.from.GID, sh.to.GID, st.Gid)
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	// The xattr calls go through /proc/self/fd: the O_PATH fd names the
	// very inode, and nothing in the path can be swapped for a link. A
	// symlink carries no capability or ACL.
	proc := "/proc/self/fd/" + strconv.Itoa(fd)
	if uok || gok {
		var caps []byte
		if !isLink && st.Mode&unix.S_IFMT == unix.S_IFREG {
			var err error
			if caps, err = getXattr(proc, capXattr); err != nil {
				return fmt.Errorf("shift %s: %s: %w", path, capXattr, err)
			}
		}
		nu, ng := -1, -1
		if uok {
			nu = int(uid)
		}
		if gok {
			ng = int(gid)
		}
		if err := unix.Fchownat(fd, "", nu, ng, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("shift %s: chown: %w", path, err)
		}
		sh.stats.Owners++
		if caps != nil {
			// chown removed the capability; put it back, its namespaced
			// root (v3) moved with the container's root.
			if err := unix.Setxattr(proc, capXattr, shiftCaps(caps, sh.from, sh.to), 0); err != nil {
				return fmt.Errorf("shift %s: restoring %s: %w", path, capXattr, err)
			}
			sh.stats.Caps++
		}
	}
	if isLink {
		return nil
	}
	for _, name := range []string{aclAccessXattr, aclDefaultXattr} {
		if name == aclDefaultXattr && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		acl, err := getXattr(proc, name)
		if err != nil {
			return fmt.Errorf("shift %s: %s: %w", path, name, err)
		}
		if acl == nil {
			continue
		}
		if shifted, changed := shiftACL(acl, sh.from, sh.to); changed {
			if err := unix.Setxattr(proc, name, shifted, 0); err != nil {
				return fmt.Errorf("shift %s: %s: %w", path, name, err)
			}
			sh.stats.ACLs++
		}
	}
	// chown of a file that is not a directory clears setuid and setgid,
	// and so may setting an ACL; restore the mode as it was (the same
	// permission bits keep the ACL's mask as it is).
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil {
		return fmt.Errorf("shift %s: %w", path, err)
	}
	if now.Mode&0o7777 != st.Mode&0o7777 {
		if err := unix.Chmod(proc, st.Mode&0o7777); err != nil {
			return fmt.Errorf("shift %s: restoring mode %04o: %w", path, st.Mode&0o7777, err)
		}
	}
	return nil
}

// getXattr reads an extended attribute; nil when the file has none or the
// filesystem keeps none.
func getXattr(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Getxattr(path, name, buf)
		switch {
		case errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		case errors.Is(err, unix.ERANGE):
			sz, err := unix.Getxattr(path, name, nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz)
			continue
		case err != nil:
			return nil, err
		}
		return buf[:n], nil
	}
}

// The kernel's vfs_ns_cap_data: magic_etc (revision in the top byte),
// two {permitted, inheritable} pairs, and for revision 3 the host uid of
// the user namespace's root the capability is for.
const (
	capRevisionMask = 0xFF000000
	capRevision3    = 0x03000000
	capV3Size       = 24
)

// shiftCaps moves a namespaced (v3) file capability's root uid with the
// container's root; other forms are returned as they are.
func shiftCaps(b []byte, from, to *Mapping) []byte {
	if len(b) != capV3Size || binary.LittleEndian.Uint32(b)&capRevisionMask != capRevision3 {
		return b
	}
	rootid := binary.LittleEndian.Uint32(b[20:])
	nid, ok := ShiftID(from.UID, to.UID, rootid)
	if !ok {
		return b
	}
	out := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(out[20:], nid)
	return out
}

// POSIX ACL xattr (the kernel's posix_acl_xattr_header and _entry): a
// version, then {tag uint16, perm uint16, id uint32} entries.
const (
	aclVersion = 2
	aclUser    = 0x02
	aclGroup   = 0x08
)

// shiftACL shifts the IDs of an ACL's named user and group entries.
func shiftACL(b []byte, from, to *Mapping) ([]byte, bool) {
	if len(b) < 4 || (len(b)-4)%8 != 0 || binary.LittleEndian.Uint32(b) != aclVersion {
		return b, false
	}
	out := append([]byte(nil), b...)
	changed := false
	for off := 4; off < len(out); off += 8 {
		tag := binary.LittleEndian.Uint16(out[off:])
		id := binary.LittleEndian.Uint32(out[off+4:])
		var nid uint32
		var ok bool
		switch tag {
		case aclUser:
			nid, ok = ShiftID(from.UID, to.UID, id)
		case aclGroup:
			nid, ok = ShiftID(from.GID, to.GID, id)
		}
		if ok {
			binary.LittleEndian.PutUint32(out[off+4:], nid)
			changed = true
		}
	}
	return out, changed
}
