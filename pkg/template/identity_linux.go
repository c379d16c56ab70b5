package template

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/identity"
)

// A template is the root of many containers, so it must not carry one
// machine's identity: its /etc/machine-id (and D-Bus's copy of it) is left
// empty in the template, and systemd makes each container its own at the
// first boot (machine-id(5): an empty file, unlike a missing one or
// "uninitialized", is no first boot, so the template's enabled units stay
// as they are). The hostname is each container's start's business
// (package identity), not the template's.
//
// The source is never changed, and the builders (mksquashfs, mkfs.erofs,
// cp) read it as it is: in the build's private mount namespace an empty
// file, with the owner, mode and times of the one it hides, is
// bind-mounted over each machine-id file that holds an id, and they read
// through it.

// hideMachineIDs bind-mounts empty files over root's machine-id files in
// the calling thread's private mount namespace. The empty files are made
// beside the template (dir, base); cleanup removes them (the mounts go with
// the namespace). A symlink is left alone: nothing is followed.
func hideMachineIDs(root, dir, base string) (cleanup func(), err error) {
	var made []string
	cleanup = func() {
		for _, p := range made {
			os.Remove(p)
		}
	}
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return cleanup, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	for _, rel := range identity.MachineIDFiles {
		target, st, ok, err := machineIDToHide(rootFD, rel)
		if err != nil {
			return cleanup, fmt.Errorf("%s: %w", filepath.Join(root, rel), err)
		}
		if !ok {
			continue
		}
		empty, err := emptyLike(dir, base, &st)
		if empty != "" {
			made = append(made, empty)
		}
		if err == nil {
			err = bindOver(empty, target)
		}
		unix.Close(target)
		if err != nil {
			return cleanup, fmt.Errorf("hiding %s from the template: %w", filepath.Join(root, rel), err)
		}
	}
	return cleanup, nil
}

// machineIDToHide opens (O_PATH) root's file rel if it is a regular file
// with an id in it.
func machineIDToHide(rootFD int, rel string) (fd int, st unix.Stat_t, ok bool, err error) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err = unix.Openat2(rootFD, rel, how)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return -1, st, false, nil // absent, or behind a symlink: not ours to read
	}
	if err != nil {
		return -1, st, false, err
	}
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 || st.Size > 4096 {
		unix.Close(fd)
		return -1, st, false, err
	}
	// Read through a second, real open of the same file (O_PATH reads
	// nothing).
	how.Flags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	rfd, err := unix.Openat2(rootFD, rel, how)
	if err != nil {
		unix.Close(fd)
		return -1, st, false, err
	}
	f := os.NewFile(uintptr(rfd), rel)
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	f.Close()
	if err != nil || !identity.NeedsEmptying(string(b)) {
		unix.Close(fd)
		return -1, st, false, err
	}
	return fd, st, true, nil
}

// emptyLike makes an empty file beside the template with st's owner, mode
// and times.
func emptyLike(dir, base string, st *unix.Stat_t) (string, error) {
	f, err := os.CreateTemp(dir, "."+base+".empty-")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
		return f.Name(), err
	}
	if err := f.Chmod(os.FileMode(st.Mode & 0o777)); err != nil {
		return f.Name(), err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return f.Name(), unix.UtimesNanoAt(unix.AT_FDCWD, f.Name(), ts, unix.AT_SYMLINK_NOFOLLOW)
}

// bindOver mounts the file src over the file open (O_PATH) as target.
func bindOver(src string, target int) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	if err := unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}
