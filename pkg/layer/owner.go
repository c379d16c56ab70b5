package layer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// OwnerName is the file at the top of a directory layer (beside the
// marker) that names the container config the layer belongs to (an image
// records it in OwnerXattr). LXC's
// tools copy configs with their hook arguments unchanged, so a hand-written
// config with an explicit --image or --upper, copied by lxc-copy, names
// the very layer of the container it was copied from.
const OwnerName = "lxc-hook-owner"

// CheckOwner makes sure the layer at layerPath (its top directory open as
// root) is not another container's: it refuses a layer whose recorded
// owner is another config that still names this layer on its hook lines,
// and records configFile as the owner otherwise (a new layer, or one whose
// owner is gone or moved on: a renamed or moved container). defaultName is
// the layer's name beside a config that names none. The record is read
// and written through root, never through a link.
func CheckOwner(root *trust.Dir, layerPath, defaultName, configFile, program string) error {
	return checkOwner(func() (string, error) {
		b, err := root.ReadFile(OwnerName)
		if isNotExist(err) {
			return "", nil
		}
		return string(b), err
	}, func(owner string) error { return root.WriteFile(OwnerName, []byte(owner+"\n"), 0o600) }, layerPath, defaultName, configFile, program)
}

// OwnerXattr is where an image file records its owner: on the file itself,
// so that it is checked before the image is checked, grown or attached.
const OwnerXattr = "trusted.lxc-hook.owner"

// CheckImageOwner is CheckOwner for the image file open as f. Where
// trusted xattrs cannot be set (a host filesystem without them, or a hook
// that is not root of the host's user namespace) nothing is recorded.
func CheckImageOwner(f *os.File, layerPath, defaultName, configFile, program string) error {
	fd := int(f.Fd())
	return checkOwner(func() (string, error) {
		buf := make([]byte, 4096)
		n, err := unix.Fgetxattr(fd, OwnerXattr, buf)
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}, func(owner string) error {
		err := unix.Fsetxattr(fd, OwnerXattr, []byte(owner), 0)
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) {
			// No trusted xattrs here, or not root of the host's user
			// namespace (an unprivileged container's pre-mount).
			return nil
		}
		return err
	}, layerPath, defaultName, configFile, program)
}

func checkOwner(read func() (string, error), write func(string) error, layerPath, defaultName, configFile, program string) error {
	if configFile == "" {
		return nil
	}
	b, err := read()
	if err != nil {
		return fmt.Errorf("layer %q: reading its owner: %w", layerPath, err)
	}
	owner := strings.TrimSpace(b)
	if owner == filepath.Clean(configFile) {
		return nil
	}
	if owner != "" && sameFile(owner, configFile) {
		return nil
	}
	if owner != "" && claims(owner, layerPath, defaultName) {
		return fmt.Errorf("layer %q belongs to the container of %s, which still uses it; a container copied with its hook arguments unchanged (lxc-copy of a config without lxc.hook.clone) would write the other container's layer: make copies with \"%s copy SRC DST\", or give this container its own --image/--upper", layerPath, owner, program)
	}
	if err := write(filepath.Clean(configFile)); err != nil {
		return fmt.Errorf("layer %q: recording its owner: %w", layerPath, err)
	}
	return nil
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// claims reports whether the config at cfg names layerPath on one of its
// hook lines, or uses the default layer beside it and that is layerPath.
func claims(cfg, layerPath, defaultName string) bool {
	f, err := os.Open(cfg)
	if err != nil {
		return false // gone: the container was moved, renamed or destroyed
	}
	defer f.Close()
	for _, line := range hook.HookLines(f) {
		if !strings.Contains(line, "lxc-hook-") {
			continue
		}
		explicit := false
		words := strings.Fields(line)
		for i, w := range words {
			for _, fl := range []string{"--image", "--upper", "-image", "-upper"} {
				v, ok := "", false
				if w == fl && i+1 < len(words) {
					v, ok = words[i+1], true
				} else if rest, found := strings.CutPrefix(w, fl+"="); found {
					v, ok = rest, true
				}
				if ok {
					explicit = true
					if filepath.Clean(strings.Trim(v, `'"`)) == layerPath {
						return true
					}
				}
			}
		}
		if !explicit && filepath.Join(filepath.Dir(cfg), defaultName) == layerPath {
			return true
		}
	}
	return false
}
