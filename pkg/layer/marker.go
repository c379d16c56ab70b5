package layer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// CheckMarker makes sure the layer rooted at dir is written by fs: it
// records fs in a layer that has no marker yet (a new layer, or one from
// before markers, whose whiteouts are then sniffed), and refuses a layer
// written by another filesystem.
func CheckMarker(dir, upper, fs string) error {
	path := filepath.Join(dir, MarkerName)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		got := strings.TrimSpace(string(b))
		if got != fs {
			return fmt.Errorf("layer %q was written by %s and cannot be mounted with %s: the two record deleted files differently, so deleted files would reappear; use the %s hook (or copy the layer's files out first)", dir, got, fs, hookFor(got))
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("layer marker %q: %w", path, err)
	}
	if fs == Overlay && hasAufsWhiteouts(upper) {
		return fmt.Errorf("layer %q holds AuFS whiteouts (.wh. files) and no marker: it was written by aufs; use lxc-hook-aufs", dir)
	}
	return writeMarker(path, fs)
}

func hookFor(fs string) string {
	if fs == Aufs {
		return "lxc-hook-aufs"
	}
	return "lxc-hook-overlay or lxc-hook-loopimg"
}

// hasAufsWhiteouts looks for AuFS's own bookkeeping at the top of upper;
// AuFS always creates these there when it mounts a branch read-write.
func hasAufsWhiteouts(upper string) bool {
	for _, n := range []string{".wh..wh.aufs", ".wh..wh.orph", ".wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(upper, n)); err == nil {
			return true
		}
	}
	return false
}

func writeMarker(path, fs string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fs+"\n"), 0o600); err != nil {
		return fmt.Errorf("layer marker %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("layer marker %q: %w", path, err)
	}
	return nil
}
