package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// EnsureRoot returns root's range for unprivileged containers. Where root
// has none (in either file), it gives root one that overlaps nothing
// (Host.Allocate, above SUB_UID_MAX and SUB_GID_MAX of loginDefs) and adds
// it to the file(s) lacking it, under the locks useradd and usermod take;
// wrote says what it added ("root:1000000000:1000000000 to /etc/subuid").
// A range of root's that another user or group has IDs in is refused
// (Host.CheckRoot).
func EnsureRoot(f HostFiles, loginDefs string) (r RootRange, wrote []string, err error) {
	h, err := ReadHost(f)
	if err != nil {
		return r, nil, err
	}
	if r, ok := h.Root(); ok {
		return r, nil, h.CheckRoot(r)
	}
	unlock, err := lockShadow(f)
	if err != nil {
		return r, nil, err
	}
	defer unlock()
	// Again under the lock: another init may have added it meanwhile.
	if h, err = ReadHost(f); err != nil {
		return r, nil, err
	}
	if r, ok := h.Root(); ok {
		return r, nil, h.CheckRoot(r)
	}
	start, count, err := h.Allocate(SubIDMax(loginDefs))
	if err != nil {
		return r, nil, err
	}
	line := fmt.Sprintf("root:%d:%d", start, count)
	for _, x := range []struct {
		path string
		have []Claim
	}{{f.SubUID, h.RootUIDs}, {f.SubGID, h.RootGIDs}} {
		if hasRange(x.have) {
			continue
		}
		if err := appendLine(x.path, line); err != nil {
			return r, wrote, fmt.Errorf("adding %q to %s: %w", line, x.path, err)
		}
		wrote = append(wrote, fmt.Sprintf("%s to %s", line, x.path))
	}
	if h, err = ReadHost(f); err != nil {
		return r, wrote, err
	}
	r, ok := h.Root()
	if !ok {
		return r, wrote, fmt.Errorf("root still has no range of %d IDs in %s and %s after adding %q", MinRange, f.SubUID, f.SubGID, line)
	}
	return r, wrote, h.CheckRoot(r)
}

// AddRange adds the line "owner:start:count" to both subordinate ID
// files, under the locks shadow's tools take, where a file lacks it; what
// usermod --add-subuids does, which refuses to change a user with running
// processes, root always. RemoveRange takes exactly that line out again.
func AddRange(f HostFiles, owner string, start uint32, count uint64) error {
	return editRange(f, fmt.Sprintf("%s:%d:%d", owner, start, count), true)
}

// RemoveRange removes the line "owner:start:count" from both subordinate
// ID files (see AddRange); other lines stay as they are.
func RemoveRange(f HostFiles, owner string, start uint32, count uint64) error {
	return editRange(f, fmt.Sprintf("%s:%d:%d", owner, start, count), false)
}

func editRange(f HostFiles, line string, add bool) error {
	unlock, err := lockShadow(f)
	if err != nil {
		return err
	}
	defer unlock()
	for _, p := range []string{f.SubUID, f.SubGID} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		lines := strings.Split(string(b), "\n")
		has := false
		var keep []string
		for _, l := range lines {
			if strings.TrimSpace(l) == line {
				has = true
				continue
			}
			keep = append(keep, l)
		}
		switch {
		case add && !has:
			err = appendLine(p, line)
		case !add && has:
			err = rewriteFile(p, strings.Join(keep, "\n"))
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

func hasRange(cs []Claim) bool {
	for _, c := range cs {
		if c.Count >= MinRange {
			return true
		}
	}
	return false
}

// lockWait bounds the wait for a lock held by useradd, usermod or vipw
// (glibc's lckpwdf waits 15 s too).
var lockWait = 15 * time.Second

// lockShadow takes the locks shadow's tools take before they write the
// subordinate ID files: lckpwdf's write lock on .pwd.lock in the files'
// directory (/etc/.pwd.lock), then FILE.lock of each file, made by
// link(2) from a file holding our PID, as shadow's commonio does.
func lockShadow(f HostFiles) (unlock func(), err error) {
	dir := filepath.Dir(f.SubUID)
	pw, err := os.OpenFile(filepath.Join(dir, ".pwd.lock"), os.O_WRONLY|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", filepath.Join(dir, ".pwd.lock"), err)
	}
	// An open file description lock conflicts with lckpwdf's classic
	// record lock, and goes with the file (no per-process surprises).
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.FcntlFlock(pw.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EINTR) {
			pw.Close()
			return nil, fmt.Errorf("lock %s: %w", pw.Name(), err)
		}
		if time.Now().After(deadline) {
			pw.Close()
			return nil, fmt.Errorf("%s is locked (useradd, usermod or vipw at work?) for more than %s: try again", pw.Name(), lockWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var held []string
	release := func() {
		for _, l := range held {
			os.Remove(l)
		}
		pw.Close() // drops the OFD lock
	}
	for _, p := range []string{f.SubUID, f.SubGID} {
		l, err := lockFile(p, deadline)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, l)
	}
	return release, nil
}

// lockFile makes path.lock the way shadow's commonio does (a file holding
// our PID, hard-linked to the lock name, so that the lock appears whole
// or not at all), removing a lock whose PID is gone. It returns the lock's
// path.
func lockFile(path string, deadline time.Time) (string, error) {
	lock := path + ".lock"
	tmp := path + "." + strconv.Itoa(os.Getpid())
	os.Remove(tmp) // ours, left by an earlier run with our PID
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock, err)
	}
	defer os.Remove(tmp)
	for {
		err := os.Link(tmp, lock)
		if err == nil {
			return lock, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("lock %s: %w", lock, err)
		}
		b, _ := os.ReadFile(lock)
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		// shadow's own test: a lock whose process is gone is stale (a PID
		// alone can be reused; shadow has nothing better to go by).
		if perr == nil && pid > 0 && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			os.Remove(lock)
			continue
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s is locked by process %s (useradd, usermod?) for more than %s: try again, or remove the lock if that process is not one of shadow's tools", lock, strings.TrimSpace(string(b)), lockWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// appendLine adds line to the file at path, keeping its other lines as
// they are (see rewriteFile).
func appendLine(path, line string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	text := string(old)
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return rewriteFile(path, text+line+"\n")
}

// rewriteFile replaces the file at path with text: a new file written
// beside it and renamed over it, with its owner and mode (0644 root:root
// for a new file, as shadow makes it). A symlink is refused.
func rewriteFile(path, text string) error {
	mode, uid, gid := os.FileMode(0o644), 0, 0
	fi, err := os.Lstat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	case err == nil:
		st := fi.Sys().(*syscall.Stat_t)
		mode, uid, gid = fi.Mode().Perm()|fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky), int(st.Uid), int(st.Gid)
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".lxc-hooks-new")
	os.Remove(tmp) // a leftover of a run that died; we hold the file's lock
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := out.WriteString(text); err != nil {
		return err
	}
	if err := out.Chown(uid, gid); err != nil {
		return err
	}
	if err := out.Chmod(mode); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
