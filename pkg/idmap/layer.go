package idmap

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// RecordName is the file at the top of a writable layer, beside its
// marker, that records the mapping its files were written under. A layer
// without it was written by a privileged container (or is new).
const RecordName = "lxc-hook-idmap"

// CheckLayer makes sure the writable layer at root (holding upper and
// work) fits the mapping m of this start (nil: privileged). Its files
// carry host IDs: the container's mapped IDs for an unprivileged layer,
// unmapped ones for a privileged layer. Started under another mapping, the
// container would see its own files owned by nobody, so that is refused
// with what to do. A new, empty layer started unprivileged gets upper and
// work chowned to the container's root, and the record.
func CheckLayer(root, upper, work string, m *Mapping) error {
	path := filepath.Join(root, RecordName)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("layer ownership record %q: %w", path, err)
	}
	recorded := strings.TrimSpace(string(b))
	has := err == nil
	switch {
	case m == nil && !has:
		return nil
	case m == nil:
		return fmt.Errorf("layer %q was written by an unprivileged container (lxc.idmap %s): its files belong to the mapped host IDs, which a privileged container shows as other users; start it with that lxc.idmap again, or give this container a new layer", root, recorded)
	case has && recorded == m.String():
		return nil
	case has:
		return fmt.Errorf("layer %q was written under lxc.idmap %s, and this start maps %s: its files would belong to nobody inside; start it with the earlier lxc.idmap, or give this container a new layer", root, recorded, m)
	}
	// Unprivileged, no record: a new layer, or one a privileged container wrote.
	uid, _ := m.RootUID()
	gid, _ := m.RootGID()
	if used, err := hasEntries(upper); err != nil {
		return fmt.Errorf("layer %q: %w", root, err)
	} else if used {
		return fmt.Errorf("layer %q was written by a privileged container (no %s record; its files belong to host root, which this container's lxc.idmap shows as nobody): start it privileged (without lxc.idmap), or give this container a new layer; the hooks never chown a layer", root, RecordName)
	}
	for _, d := range []string{upper, work} {
		if err := os.Chown(d, int(uid), int(gid)); err != nil {
			return fmt.Errorf("layer %q: chown %s to the container's root (%d:%d): %w", root, d, uid, gid, err)
		}
	}
	return SetRecord(root, m)
}

// SetRecord writes m as the mapping the layer at root was written under
// (a new file renamed over the old one).
func SetRecord(root string, m *Mapping) error {
	path := filepath.Join(root, RecordName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(m.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("layer ownership record %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("layer ownership record %q: %w", path, err)
	}
	return nil
}

// Record reads the mapping the layer at root was written under; nil when
// it has no record (written by a privileged container, or never started).
func Record(root string) (*Mapping, error) {
	path := filepath.Join(root, RecordName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("layer ownership record %q: %w", path, err)
	}
	m, err := ParseRecord(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("layer ownership record %q: %w", path, err)
	}
	return m, nil
}

// hasEntries reports whether dir holds anything.
func hasEntries(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return true, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return false, nil
}
