package layer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
)

// OwnerName is the file at the top of a writable layer (beside the
// marker) that names the container config the layer belongs to. LXC's
// tools copy configs with their hook arguments unchanged, so a hand-written
// config with an explicit --image or --upper, copied by lxc-copy, names
// the very layer of the container it was copied from.
const OwnerName = "lxc-hook-owner"

// CheckOwner makes sure the layer at layerPath (its top directory mounted
// or found at root) is not another container's: it refuses a layer whose
// recorded owner is another config that still names this layer on its
// hook lines, and records configFile as the owner otherwise (a new layer,
// or one whose owner is gone or moved on: a renamed or moved container).
// defaultName is the layer's name beside a config that names none.
func CheckOwner(root, layerPath, defaultName, configFile, program string) error {
	if configFile == "" {
		return nil
	}
	p := filepath.Join(root, OwnerName)
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("layer owner %q: %w", p, err)
	}
	owner := strings.TrimSpace(string(b))
	if owner == filepath.Clean(configFile) {
		return nil
	}
	if owner != "" && sameFile(owner, configFile) {
		return nil
	}
	if owner != "" && claims(owner, layerPath, defaultName) {
		return fmt.Errorf("layer %q belongs to the container of %s, which still uses it; a container copied with its hook arguments unchanged (lxc-copy of a config without lxc.hook.clone) would write the other container's layer: make copies with \"%s copy SRC DST\", or give this container its own --image/--upper", layerPath, owner, program)
	}
	return writeMarker(p, filepath.Clean(configFile))
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
	for _, line := range hook.ConfigValues(f, "lxc.hook.pre-mount")["lxc.hook.pre-mount"] {
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
