package idmap

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
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
// work chowned to the container's root, and the record. root must pass
// package trust's rule; everything in it is used through its fd, no link
// followed (upper/ and work/ belong to the container's root).
func CheckLayer(root, upper, work string, m *Mapping) error {
	d, err := trust.OpenDir(root, "layer")
	if err != nil {
		return err
	}
	defer d.Close()
	return CheckLayerDir(d, upper, work, m)
}

// CheckLayerDir is CheckLayer for the layer directory d, already open and
// checked.
func CheckLayerDir(d *trust.Dir, upper, work string, m *Mapping) error {
	root := d.Path()
	names := make([]string, 0, 2)
	for _, p := range []string{upper, work} {
		if filepath.Dir(p) != filepath.Clean(root) {
			return fmt.Errorf("layer %q: %s is not directly in it", root, p)
		}
		names = append(names, filepath.Base(p))
	}
	b, err := d.ReadFile(RecordName)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("layer ownership record: %w", err)
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
	if used, err := hasEntries(d, names[0]); err != nil {
		return fmt.Errorf("layer %q: %w", root, err)
	} else if used {
		return fmt.Errorf("layer %q was written by a privileged container (no %s record; its files belong to host root, which this container's lxc.idmap shows as nobody): start it privileged (without lxc.idmap), or give this container a new layer; the hooks never chown a layer", root, RecordName)
	}
	for _, n := range names {
		if err := d.Chown(n, int(uid), int(gid)); err != nil {
			return fmt.Errorf("layer %q: chown %s to the container's root (%d:%d): %w", root, n, uid, gid, err)
		}
	}
	if err := d.WriteFile(RecordName, []byte(m.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("layer ownership record: %w", err)
	}
	return nil
}

// SetRecord writes m as the mapping the layer at root was written under
// (a new file renamed over the old one, through the checked layer
// directory's fd: no link followed).
func SetRecord(root string, m *Mapping) error {
	d, err := trust.OpenDir(root, "layer")
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.WriteFile(RecordName, []byte(m.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("layer ownership record: %w", err)
	}
	return nil
}

// Record reads the mapping the layer at root was written under; nil when
// it has no record (written by a privileged container, or never started).
func Record(root string) (*Mapping, error) {
	d, err := trust.OpenDir(root, "layer")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	b, err := d.ReadFile(RecordName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("layer ownership record in %q: %w", root, err)
	}
	m, err := ParseRecord(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("layer ownership record in %q: %w", root, err)
	}
	return m, nil
}

// hasEntries reports whether the directory name in d holds anything.
func hasEntries(d *trust.Dir, name string) (bool, error) {
	sub, err := d.Sub(name)
	if err != nil {
		return false, err
	}
	defer sub.Close()
	names, err := sub.File().Readdirnames(1)
	if len(names) > 0 {
		return true, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return false, nil
}
