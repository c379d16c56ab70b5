package dirlayer

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
)

// Flags are the directory-layer hooks' own flags, apart from the backends,
// so that tools reading container configs parse a hook line exactly as the
// hook does without linking the hook's machinery. aufs selects
// lxc-hook-aufs's set (with --fallback).
type Flags struct {
	Upper    string
	Fallback string
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet, aufs bool) {
	holds := "upper/ and work/"
	if aufs {
		holds = "upper/, work/ and AuFS's xino file"
	}
	fs.StringVar(&f.Upper, "upper", "", "`DIR` of the persistent writable layer (created 0700 if missing); holds "+holds+" (default: layer/ beside the container's config)")
	if aufs {
		fs.StringVar(&f.Fallback, "fallback", "", "`FS` to use where the kernel has no AuFS: overlay (default: refuse the start)")
	}
}

// Validate checks the flags and fills in the default layer directory.
func (f *Flags) Validate(configFile string, aufs bool) error {
	if aufs && f.Fallback != "" && f.Fallback != "overlay" {
		return fmt.Errorf("--fallback %q: the only fallback is overlay", f.Fallback)
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
