package loopimg

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/lxc-hooks/lxc-hooks/pkg/image"
)

// Flags are lxc-hook-loopimg's own flags, apart from the backend, so that
// tools reading container configs (status, resize) parse a hook line
// exactly as the hook does without linking the hook's machinery.
type Flags struct {
	Image       string
	SizeFlag    string
	Preallocate bool
	Fsck        string
	DirectIO    bool
	Discard     bool
	// Ephemeral makes a new image at every start, unlinked once mounted:
	// the layer is gone when the loop device goes, crash or not.
	Ephemeral bool

	size int64
}

func (b *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&b.Image, "image", "", "ext4 image `FILE` of the writable layer, created if missing (default: layer.img beside the container's config)")
	fs.StringVar(&b.SizeFlag, "size", "", "`SIZE` of the layer, with K, M, G or T (binary); needed to create the image, grows an existing one")
	fs.BoolVar(&b.Preallocate, "preallocate", false, "reserve the image's space on the host (fallocate) instead of a sparse file")
	fs.BoolVar(&b.Discard, "discard", true, "give space freed inside back to the host (ext4 discard: the sparse image shrinks on the host when files are deleted); ignored with --preallocate; --discard=false turns it off")
	fs.BoolVar(&b.Ephemeral, "ephemeral", false, "a new empty layer at every start, gone at stop (also after a crash): a sparse image of --size made in the directory of --image under a name of its own, unlinked as soon as it is mounted; --image itself is never touched")
	fs.StringVar(&b.Fsck, "fsck", "auto", "`WHEN` to run e2fsck -p before mounting: auto (when the superblock asks, as e2fsck -p decides), always (a full check, e2fsck -p -f, at every start), never (not even when the superblock asks)")
	fs.BoolVar(&b.DirectIO, "direct-io", true, "attach the image with direct I/O: no second copy of the layer in the host's page cache (measured: 1.0 instead of 2.0 MiB of cache per MiB written, and faster writes); falls back to buffered I/O where the host filesystem refuses it; --direct-io=false turns it off")
}

// DefaultImageName is the image's name in the container's own directory
// (beside its LXC config) when --image is not given.
const DefaultImageName = "layer.img"

func (b *Flags) Validate(configFile string) error {
	if b.Image == "" {
		if configFile == "" || !filepath.IsAbs(configFile) {
			return errors.New("--image FILE is required: the ext4 image that keeps the container's writes (no LXC_CONFIG_FILE to put it beside)")
		}
		b.Image = filepath.Join(filepath.Dir(configFile), DefaultImageName)
	}
	if !filepath.IsAbs(b.Image) {
		return fmt.Errorf("--image %q is not an absolute path", b.Image)
	}
	b.Image = filepath.Clean(b.Image)
	if b.SizeFlag != "" {
		n, err := image.ParseSize(b.SizeFlag)
		if err != nil {
			return err
		}
		b.size = n
	}
	if b.Ephemeral && b.size == 0 {
		return errors.New("--ephemeral needs --size: the cap of the new image made at every start")
	}
	switch b.Fsck {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("--fsck %q: use auto, always or never", b.Fsck)
	}
	return nil
}
