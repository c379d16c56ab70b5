// Package state keeps, per container, what a hook attached and where it
// mounted, between the start hook (pre-mount, or pre-start for an
// unprivileged container) and the stop hook: the stop hook runs in another
// process, and must detach and verify the very mounts and loop devices the
// start attached, not others that happen to use the same template.
package state

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"

	"github.com/lxc-hooks/lxc-hooks/pkg/runfile"
)

// DefaultRoot is where the runtime directories live: on tmpfs on systemd
// hosts, so nothing stale survives a reboot, like the loop devices.
const DefaultRoot = "/run/lxc-hooks"

// Loop is one loop device a hook attached or adopted.
type Loop struct {
	Device  string `json:"device"` // /dev/loopN
	Number  int    `json:"number"`
	Diskseq uint64 `json:"diskseq"` // changes when the device is reused
	Backing string `json:"backing"`
	Dev     uint64 `json:"dev"` // backing file's device and inode
	Ino     uint64 `json:"ino"`
	// Role is "lower" (a read-only template) or "image" (the writable layer).
	Role string `json:"role"`
	// MountNS is the inode of the mount namespace of the run that attached
	// it. Kept for records of older versions; the kernel reuses the number
	// as soon as the namespace is gone, so it identifies nothing.
	MountNS uint64 `json:"mount_ns,omitempty"`
	// MountNSID is the 64-bit id of that namespace, which is never reused:
	// processes still in it hold the run's mounts.
	MountNSID uint64 `json:"mount_ns_id,omitempty"`
	// Mounts are the unique 64-bit ids (never reused) of the run's mounts
	// of its layers (the union, the container's root, the image, the
	// lowers): a process with a file, a working directory or a root on one
	// of them holds the layers, wherever it runs.
	Mounts []uint64 `json:"mounts,omitempty"`
	// Shared marks a read-only device other containers may hold too.
	Shared bool `json:"shared"`
	// UnionDev is the device number ("major:minor") of the run's union
	// filesystem over the layers: another mount namespace with it mounted
	// (a copy of the container's root) holds this device too.
	UnionDev string `json:"union_dev,omitempty"`
}

// Record is what the start hook leaves for the stop hook.
type Record struct {
	Container  string `json:"container"`
	ConfigFile string `json:"config"`
	// MountNS: see Loop.MountNS.
	MountNS uint64 `json:"mount_ns,omitempty"`
	Loops   []Loop `json:"loops,omitempty"`
	// Leftovers are devices of an earlier run still held when this run
	// started; the stop hook keeps checking them.
	Leftovers []Loop `json:"leftovers,omitempty"`
	// Mountpoints the hook created under its runtime directory.
	Mountpoints []string `json:"mountpoints,omitempty"`
	// HostRoot is an unprivileged container's root as pre-start attached it
	// in the host's mount namespace, at the rootfs path, for LXC to take
	// (nil for a privileged container, whose root never leaves its own
	// namespace). The stop hook detaches it, and only if the mount there
	// still has this unique id: the path alone names whatever is mounted
	// there now.
	HostRoot *HostMount `json:"host_root,omitempty"`
}

// HostMount is a mount in the host's mount namespace, by its path and its
// unique 64-bit mount id (statx STATX_MNT_ID_UNIQUE), which the kernel
// never reuses.
type HostMount struct {
	Path    string `json:"path"`
	MountID uint64 `json:"mount_id"`
	// Dev is its filesystem's device number ("major:minor"), which copies
	// of the mount in other namespaces share (their mount ids differ).
	Dev string `json:"dev,omitempty"`
}

// Dir is one container's runtime directory.
type Dir struct{ Path string }

// For returns the runtime directory of a container. The name alone is not
// unique (one name may exist under several lxcpaths), so a short hash of
// the config path is added; the name stays readable for a sysadmin.
func For(root, name, configFile string) Dir {
	h := fnv.New32a() // a name, not a secret: no crypto needed (or linked)
	h.Write([]byte(configFile))
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, name)
	return Dir{Path: filepath.Join(root, fmt.Sprintf("%s-%08x", safe, h.Sum32()))}
}

func (d Dir) file() string { return filepath.Join(d.Path, "state") }

// Mountpoint returns (and creates) a private mountpoint directory.
func (d Dir) Mountpoint(name string) (string, error) {
	p := filepath.Join(d.Path, name)
	if err := runfile.Mkdir(p); err != nil {
		return "", fmt.Errorf("mountpoint %q: %w", p, err)
	}
	return p, nil
}

// Load reads the record; a missing record is (nil, nil).
func (d Dir) Load() (*Record, error) {
	b, err := os.ReadFile(d.file())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("state %q: %w", d.file(), err)
	}
	return r, nil
}

// Save writes the record atomically.
func (d Dir) Save(r *Record) error {
	var b bytes.Buffer
	if err := encode(&b, r); err != nil {
		return err
	}
	return runfile.Write(d.file(), b.Bytes())
}

// Remove deletes the record and the empty mountpoints with os.Remove only:
// a mountpoint that is still mounted, or not empty, stays, and so does
// whatever is below it. Never RemoveAll next to mounts.
func (d Dir) Remove(r *Record) error {
	var firstErr error
	if r != nil {
		for _, m := range r.Mountpoints {
			if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) && firstErr == nil {
				firstErr = err
			}
		}
	}
	if err := os.Remove(d.file()); err != nil && !errors.Is(err, os.ErrNotExist) && firstErr == nil {
		firstErr = err
	}
	if err := os.Remove(d.Path); err != nil && !errors.Is(err, os.ErrNotExist) && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

// TemplateUsers is the set of containers using a shared template loop
// device, one empty file per container runtime directory, so that a stop
// can tell "other containers still use it" without reading every record.
type TemplateUsers struct{ Path string }

// TemplatesDir keeps what the shared template devices need: the users
// sets, and the lock and hint of the find-or-attach. It is host-wide, not
// under --run-dir: the device of a template is one for the whole host, so
// containers with different --run-dir values share it too, and must see
// each other as its users (and serialize its attach).
var TemplatesDir = filepath.Join(DefaultRoot, "templates")

// UsersOf is the set for the template file dev:ino.
func UsersOf(dev, ino uint64) TemplateUsers {
	return TemplateUsers{Path: filepath.Join(TemplatesDir, fmt.Sprintf("%d-%d.users", dev, ino))}
}

// Add records the container whose runtime directory is d.
func (u TemplateUsers) Add(d Dir) error {
	f, err := runfile.Open(filepath.Join(u.Path, filepath.Base(d.Path)))
	if err != nil {
		return err
	}
	return f.Close()
}

// Remove forgets d.
func (u TemplateUsers) Remove(d Dir) {
	os.Remove(filepath.Join(u.Path, filepath.Base(d.Path)))
}

// Others reports whether a container other than d is recorded.
func (u TemplateUsers) Others(d Dir) bool {
	f, err := os.Open(u.Path)
	if err != nil {
		return false
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(64)
		for _, n := range names {
			if n != filepath.Base(d.Path) {
				return true
			}
		}
		if err != nil {
			return false
		}
	}
}

// Owner finds the container whose record (in any runtime directory under
// root) holds loop device number with this disk sequence number, and that
// record's entry for it.
func Owner(root string, number int, diskseq uint64) (*Record, *Loop) {
	files, _ := filepath.Glob(filepath.Join(root, "*", "state"))
	for _, f := range files {
		r, err := Dir{Path: filepath.Dir(f)}.Load()
		if err != nil || r == nil {
			continue
		}
		for _, list := range [][]Loop{r.Loops, r.Leftovers} {
			for i := range list {
				if list[i].Number == number && (diskseq == 0 || list[i].Diskseq == diskseq) {
					return r, &list[i]
				}
			}
		}
	}
	return nil, nil
}
