package mount

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// MountOverlayReadOnly mounts a read-only overlay of lowers (topmost first,
// no upper) at target: how a writable layer and its template are read as
// one tree. Whiteouts and opaque directories in any lower but the last are
// honoured.
func MountOverlayReadOnly(source string, lowers []string, target string) error {
	c, err := open("overlay", target)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.set(Param{Key: "source", Value: source}); err != nil {
		return err
	}
	if err := unix.FsconfigSetString(c.fd, "lowerdir+", lowers[0]); err == nil {
		c.params = append(c.params, Param{Key: "lowerdir+", Value: lowers[0]})
		for _, l := range lowers[1:] {
			if err := c.set(Param{Key: "lowerdir+", Value: l}); err != nil {
				return err
			}
		}
	} else {
		if !errors.Is(err, unix.EINVAL) {
			c.params = append(c.params, Param{Key: "lowerdir+", Value: lowers[0]})
			return c.fail(err)
		}
		kernelLog(c.fd) // before 6.8: one lowerdir string
		if _, err := (Overlay{Lowers: lowers, Upper: "-", Work: "-"}).Params(false); err != nil {
			return err
		}
		if err := c.set(Param{Key: "lowerdir", Value: strings.Join(lowers, ":")}); err != nil {
			return err
		}
	}
	if err := c.set(Param{Key: "ro", Flag: true}); err != nil {
		return err
	}
	return c.attach(unix.MOUNT_ATTR_RDONLY)
}
