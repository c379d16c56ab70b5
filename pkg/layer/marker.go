package layer

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// MarkerName is the file at the top of a writable layer (beside its upper
// and work directories) that records which union filesystem writes it.
// overlayfs and AuFS record deletions differently (0/0 character devices
// versus .wh. files), so a layer mounted by the other one shows deleted
// files again.
const MarkerName = "lxc-hook-layer"

// Union filesystems that write layers.
const (
	Overlay = "overlay"
	Aufs    = "aufs"
)

// CheckMarker makes sure the layer whose top directory is open as dir
// (holding upper/) is written by fs: it records fs in a layer that has no
// marker yet (a new layer, or one from before markers, whose whiteouts are
// then sniffed), and refuses a layer written by another filesystem. The
// marker is read and written through dir, never through a link.
func CheckMarker(dir *trust.Dir, fs string) error {
	b, err := dir.ReadFile(MarkerName)
	switch {
	case err == nil:
		got := strings.TrimSpace(string(b))
		if got != fs {
			return fmt.Errorf("layer %q was written by %s and cannot be mounted with %s: the two record deleted files differently, so deleted files would reappear; use the %s hook (or copy the layer's files out first)", dir.Path(), got, fs, hookFor(got))
		}
		return nil
	case !isNotExist(err):
		return fmt.Errorf("layer marker: %w", err)
	}
	if fs == Overlay && hasAufsWhiteouts(dir) {
		return fmt.Errorf("layer %q holds AuFS whiteouts (.wh. files) and no marker: it was written by aufs; use lxc-hook-aufs", dir.Path())
	}
	if err := dir.WriteFile(MarkerName, []byte(fs+"\n"), 0o600); err != nil {
		return fmt.Errorf("layer marker: %w", err)
	}
	return nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// MarkerOf reads the marker of the layer directory at path: "" when there
// is none, or the layer cannot be used (the start says why later).
func MarkerOf(path string) string {
	d, err := trust.OpenDir(path, "layer")
	if err != nil {
		return ""
	}
	defer d.Close()
	b, err := d.ReadFile(MarkerName)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func hookFor(fs string) string {
	if fs == Aufs {
		return "lxc-hook-aufs"
	}
	return "lxc-hook-overlay or lxc-hook-loopimg"
}

// hasAufsWhiteouts looks for AuFS's own bookkeeping at the top of upper/;
// AuFS always creates these there when it mounts a branch read-write.
func hasAufsWhiteouts(dir *trust.Dir) bool {
	upper, err := dir.Sub("upper")
	if err != nil {
		return false
	}
	defer upper.Close()
	for _, n := range []string{".wh..wh.aufs", ".wh..wh.orph", ".wh..wh.plnk"} {
		if _, err := upper.Lstat(n); err == nil {
			return true
		}
	}
	return false
}
