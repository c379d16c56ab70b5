package layer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
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
// names the path and what is wrong with it, in one line.
func ResolveLower(path string) (Lower, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Lower{}, fmt.Errorf("lower %q does not exist", path)
		}
		return Lower{}, fmt.Errorf("lower %q: %w", path, err)
	}
	if fi.IsDir() {
		return Lower{Path: path}, nil
	}
	if !fi.Mode().IsRegular() {
		return Lower{}, fmt.Errorf("lower %q is neither a directory nor a filesystem image file (%s)", path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return Lower{}, fmt.Errorf("lower %q: %w", path, err)
	}
	defer f.Close()
	fstype, err := DetectFS(f)
	if err != nil {
		return Lower{}, fmt.Errorf("lower %q: reading its superblock: %w", path, err)
	}
	if fstype == "" {
		return Lower{}, fmt.Errorf("lower %q is neither a directory nor a squashfs, erofs or ext4 image", path)
	}
	dev, ino := fileID(fi)
	return Lower{Path: path, FSType: fstype, Dev: dev, Ino: ino}, nil
}
