package layer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// Filesystem magic numbers and where they sit, from the kernel headers.
const (
	squashfsMagic = 0x73717368 // "hsqs" at offset 0, little endian
	erofsMagic    = 0xE0F5E1E2 // at offset 1024
	extMagic      = 0xEF53     // at 1024 + 56, the ext2/3/4 superblock
)

// DetectFS names the filesystem whose superblock starts the image in r:
// "squashfs", "erofs", "ext4" (for any ext2/3/4), or "" when none matches.
func DetectFS(r io.ReaderAt) (string, error) {
	buf := make([]byte, 1088)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	buf = buf[:n]
	if len(buf) >= 4 && binary.LittleEndian.Uint32(buf[0:4]) == squashfsMagic {
		return "squashfs", nil
	}
	if len(buf) >= 1028 && binary.LittleEndian.Uint32(buf[1024:1028]) == erofsMagic {
		return "erofs", nil
	}
	if len(buf) >= 1082 && binary.LittleEndian.Uint16(buf[1080:1082]) == extMagic {
		return "ext4", nil
	}
	return "", nil
}

// Lower is one read-only layer.
type Lower struct {
	// Path as the user gave it.
	Path string
	// FSType is "" for a directory, else the filesystem in the image file.
	FSType string
	// Dev and Ino identify an image file (to find its loop devices).
	Dev, Ino uint64
}

// IsImage reports whether the lower is a filesystem image to loop-mount.
func (l Lower) IsImage() bool { return l.FSType != "" }

// ResolveLower checks path and says what kind of lower it is. The error
// names the path and what is wrong with it, in one line. The path must
// pass package trust's rule (root's, and every directory above it, and
// writable by root alone): a user who can replace a template makes host
// root mount a filesystem image they crafted, or boot their files.
func ResolveLower(path string) (Lower, error) {
	l, f, err := ResolveLowerOpen(path)
	if f != nil {
		f.Close()
	}
	return l, err
}

// ResolveLowerOpen is ResolveLower that also returns the image file it
// checked, open (nil for a directory), for the caller to use instead of
// opening the name again; the caller closes it.
func ResolveLowerOpen(path string) (Lower, *os.File, error) {
	l, f, err := resolveLower(path)
	if err != nil || !l.IsImage() {
		if f != nil {
			f.Close()
		}
		return l, nil, err
	}
	return l, f, nil
}

func resolveLower(path string) (Lower, *os.File, error) {
	f, st, err := trust.Open(path, "lower")
	if err != nil {
		return Lower{}, nil, lowerError(path, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return Lower{Path: path}, f, nil
	case unix.S_IFREG:
	default:
		return Lower{}, f, fmt.Errorf("lower %q is neither a directory nor a filesystem image file (%s)", path, typeOf(st.Mode))
	}
	fstype, err := DetectFS(f)
	if err != nil {
		return Lower{}, f, fmt.Errorf("lower %q: reading its superblock: %w", path, err)
	}
	if fstype == "" {
		return Lower{}, f, fmt.Errorf("lower %q is neither a directory nor a squashfs, erofs or ext4 image", path)
	}
	return Lower{Path: path, FSType: fstype, Dev: uint64(st.Dev), Ino: st.Ino}, f, nil
}

func lowerError(path string, err error) error {
	var te *trust.Error
	if errors.As(err, &te) {
		return err // names the lower, what is wrong and the fix
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lower %q does not exist", path)
	}
	return fmt.Errorf("lower %q: %w", path, err)
}

// Open opens the image lower for reading, through the same checks as
// ResolveLower, and makes sure it is still the file ResolveLower saw.
func (l Lower) Open() (*os.File, error) {
	f, st, err := trust.Open(l.Path, "lower")
	if err != nil {
		return nil, lowerError(l.Path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || uint64(st.Dev) != l.Dev || st.Ino != l.Ino {
		f.Close()
		return nil, fmt.Errorf("lower %q was replaced since it was checked: try again", l.Path)
	}
	return f, nil
}

// typeOf maps a stat mode's file type to fs.FileMode's, for messages.
func typeOf(mode uint32) fs.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	}
	return 0
}
