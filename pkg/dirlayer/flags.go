package dirlayer

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/lxc-hooks/lxc-hooks/pkg/image"
)

// Flags are the directory-layer hooks' own flags, apart from the backends,
// so that tools reading container configs parse a hook line exactly as the
// hook does without linking the hook's machinery. aufs selects
// lxc-hook-aufs's set (with --fallback).
type Flags struct {
	Upper    string
	Fallback string
	// Ephemeral puts the layer on a tmpfs mounted in the container's own
	// mount namespace: never on disk, gone with the namespace.
	Ephemeral bool
	// Size caps the ephemeral tmpfs (tmpfs size=).
	Size string
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet, aufs bool) {
	holds := "upper/ and work/"
	if aufs {
		holds = "upper/, work/ and AuFS's xino file"
	}
	fs.StringVar(&f.Upper, "upper", "", "`DIR` of the persistent writable layer (created 0700 if missing); holds "+holds+" (default: layer/ beside the container's config)")
	if aufs {
		// No --ephemeral or --size: AuFS has no ephemeral mode, and --help
		// documents only what the binary accepts.
		fs.StringVar(&f.Fallback, "fallback", "", "`FS` to use where the kernel has no AuFS: overlay (default: refuse the start)")
		return
	}
	fs.BoolVar(&f.Ephemeral, "ephemeral", false, "a new empty layer at every start, gone at stop (also after a crash): a tmpfs mounted in the container's own mount namespace, never on disk; --upper is not used")
	fs.StringVar(&f.Size, "size", "", "`SIZE` cap of the --ephemeral tmpfs layer, with K, M, G or T; RAM (and swap) it may use (default: tmpfs's own, half of RAM)")
}

// Validate checks the flags and fills in the default layer directory.
func (f *Flags) Validate(configFile string, aufs bool) error {
	if aufs && f.Fallback != "" && f.Fallback != "overlay" {
		return fmt.Errorf("--fallback %q: the only fallback is overlay", f.Fallback)
	}
	if f.Size != "" {
		if _, err := image.ParseSize(f.Size); err != nil {
			return err
		}
		if !f.Ephemeral {
			return errors.New("--size caps only an --ephemeral layer here (a directory layer has no cap; lxc-hook-loopimg has one)")
		}
	}
	return ValidateUpper(&f.Upper, configFile)
}

// DefaultLayerName is the writable layer's name in the container's own
// directory (beside its LXC config) when --upper is not given.
const DefaultLayerName = "layer"

// ValidateUpper checks the --upper flag, defaulting it to the "layer"
// directory beside the container's config.
func ValidateUpper(upper *string, configFile string) error {
	if *upper == "" {
		if configFile == "" || !filepath.IsAbs(configFile) {
			return errors.New("--upper DIR is required: the directory that keeps the container's writes (no LXC_CONFIG_FILE to put it beside)")
		}
		*upper = filepath.Join(filepath.Dir(configFile), DefaultLayerName)
	}
	if !filepath.IsAbs(*upper) {
		return fmt.Errorf("--upper %q is not an absolute path", *upper)
	}
	*upper = filepath.Clean(*upper)
	return nil
}
