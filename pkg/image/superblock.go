package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Superblock holds the ext4 superblock fields the hook decides on.
type Superblock struct {
	BlockSize     int64
	Blocks        uint64
	FreeBlocks    uint64
	State         uint16
	MountCount    uint16
	MaxMountCount int16
	LastCheck     time.Time
	CheckInterval time.Duration
	Incompat      uint32
	// ROCompat holds the read-only compatible features (orphan_present).
	ROCompat uint32
	// LastOrphan is the head of the orphan list: inodes deleted while
	// still open, which the next mount (or e2fsck) releases.
	LastOrphan uint32
}

const (
	sbOffset         = 1024
	extMagic         = 0xEF53
	stateValid       = 0x0001
	stateError       = 0x0002
	incompatRecover  = 0x0004 // the journal needs replaying
	incompatJournDev = 0x0008
	incompat64bit    = 0x0080
	// roCompatOrphanPresent: the orphan file (orphan_file) holds inodes.
	roCompatOrphanPresent = 0x10000
)

// ErrNotExt is returned for data without an ext2/3/4 superblock.
var ErrNotExt = errors.New("no ext2/3/4 superblock (magic 0xEF53 missing)")

// ReadSuperblock reads the primary superblock.
func ReadSuperblock(r io.ReaderAt) (*Superblock, error) {
	b := make([]byte, 1024)
	if _, err := r.ReadAt(b, sbOffset); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrNotExt
		}
		return nil, err
	}
	le := binary.LittleEndian
	if le.Uint16(b[0x38:]) != extMagic {
		return nil, ErrNotExt
	}
	sb := &Superblock{
		BlockSize:     1024 << le.Uint32(b[0x18:]),
		Blocks:        uint64(le.Uint32(b[0x04:])),
		MountCount:    le.Uint16(b[0x34:]),
		MaxMountCount: int16(le.Uint16(b[0x36:])),
		State:         le.Uint16(b[0x3A:]),
		LastCheck:     time.Unix(int64(le.Uint32(b[0x40:])), 0),
		CheckInterval: time.Duration(le.Uint32(b[0x44:])) * time.Second,
		Incompat:      le.Uint32(b[0x60:]),
		ROCompat:      le.Uint32(b[0x64:]),
		LastOrphan:    le.Uint32(b[0xE8:]),
	}
	sb.FreeBlocks = uint64(le.Uint32(b[0x0C:]))
	if sb.Incompat&incompat64bit != 0 {
		sb.Blocks |= uint64(le.Uint32(b[0x150:])) << 32
		sb.FreeBlocks |= uint64(le.Uint32(b[0x158:])) << 32
	}
	return sb, nil
}

// Used is the space in use, as the superblock last recorded it (the
// kernel updates it lazily while mounted).
func (s *Superblock) Used() int64 { return int64(s.Blocks-s.FreeBlocks) * s.BlockSize }

// Size is the filesystem's size in bytes.
func (s *Superblock) Size() int64 { return int64(s.Blocks) * s.BlockSize }

// NeedsRecovery reports a journal that needs replaying (a filesystem
// copied while mounted and not frozen, or not unmounted cleanly).
func (s *Superblock) NeedsRecovery() bool { return s.Incompat&incompatRecover != 0 }

// HasOrphans reports inodes deleted while open when the filesystem was
// written last (in the orphan list or the orphan file): a copy of a
// running container's filesystem has them for every file its processes
// hold open after deleting it; a mount or e2fsck -p releases them.
func (s *Superblock) HasOrphans() bool {
	return s.LastOrphan != 0 || s.ROCompat&roCompatOrphanPresent != 0
}

// NeedsCheck says why e2fsck -p would check this filesystem, or "" when it
// would only confirm it clean: the same tests e2fsck's preen mode makes
// before it decides to skip a filesystem, done here without a fork on
// every start.
func (s *Superblock) NeedsCheck(now time.Time) string {
	switch {
	case s.Incompat&incompatRecover != 0:
		return "its journal needs recovery (not unmounted cleanly)"
	case s.State&stateError != 0:
		return "it has recorded errors"
	case s.State&stateValid == 0:
		return "it was not unmounted cleanly"
	case s.MaxMountCount > 0 && s.MountCount >= uint16(s.MaxMountCount):
		return fmt.Sprintf("it was mounted %d times (maximum %d)", s.MountCount, s.MaxMountCount)
	case s.CheckInterval > 0 && now.After(s.LastCheck.Add(s.CheckInterval)):
		return "its check interval has passed"
	}
	return ""
}
