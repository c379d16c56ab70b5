package mount

import (
	"fmt"
	"strings"
)

// aufsDataLimit keeps each mount(2) data string within one page, the most
// the kernel copies in.
const aufsDataLimit = 4000

// Aufs describes an AuFS mount.
type Aufs struct {
	Upper  string
	Lowers []string // topmost first
	// Xino is AuFS's external inode number table. AuFS defaults to
	// /tmp/.aufs.xino, where it can fill the host's /tmp; it goes next to
	// the layer instead.
	Xino string
}

// Data builds the mount(2) option strings: the first for the mount, any
// further ones for "remount,append:" of the lowers that did not fit in one
// page (as Docker's aufs driver did). Branch paths cannot carry ':' '=' or
// ',' (the branch syntax) nor a newline, and are refused.
func (a Aufs) Data() ([]string, error) {
	if len(a.Lowers) == 0 {
		return nil, fmt.Errorf("aufs needs at least one lower layer")
	}
	check := func(role, p string) error {
		if p == "" {
			return fmt.Errorf("aufs %s is empty", role)
		}
		if i := strings.IndexAny(p, ":=,\n"); i >= 0 {
			return fmt.Errorf("aufs %s %q contains %q, which AuFS branch options cannot carry; use a path without it", role, p, p[i:i+1])
		}
		return nil
	}
	if err := check("upper", a.Upper); err != nil {
		return nil, err
	}
	if err := check("xino file", a.Xino); err != nil {
		return nil, err
	}
	for _, l := range a.Lowers {
		if err := check("lower", l); err != nil {
			return nil, err
		}
	}
	first := "br=" + a.Upper + "=rw"
	suffix := ",xino=" + a.Xino
	i := 0
	for ; i < len(a.Lowers); i++ {
		br := ":" + a.Lowers[i] + "=ro+wh"
		if len(first)+len(br)+len(suffix) > aufsDataLimit && i > 0 {
			break
		}
		first += br
	}
	if len(first)+len(suffix) > aufsDataLimit {
		return nil, fmt.Errorf("aufs branch %q is too long for one mount option page", a.Lowers[0])
	}
	data := []string{first + suffix}
	for ; i < len(a.Lowers); i++ {
		// append adds below the last branch, keeping the order topmost first.
		data = append(data, "append:"+a.Lowers[i]+"=ro+wh")
	}
	return data, nil
}
