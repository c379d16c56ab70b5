package mount

import (
	"fmt"
	"strings"
)

// Param is one fsconfig call: a string key=value, or a flag when Value is "".
type Param struct {
	Key   string
	Value string
	Flag  bool
}

func (p Param) String() string {
	if p.Flag {
		return p.Key
	}
	return p.Key + "=" + p.Value
}

// JoinParams renders params as a mount -o option string, for messages.
func JoinParams(ps []Param) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Overlay describes an overlayfs mount.
type Overlay struct {
	// Source is what mountinfo shows as the mount's source; the hooks put
	// their name there so the stop hook can tell their mounts from LXC's.
	Source string
	// Lowers, topmost first.
	Lowers []string
	Upper  string
	Work   string
}

// Params builds the fsconfig parameters. With lowerdirPlus (Linux 6.8+)
// every lower is its own "lowerdir+" parameter, which takes ':' and ','
// verbatim. Without it all lowers share one "lowerdir" string split on ':',
// and kernels before 6.5 re-join every parameter into a comma-separated
// string, so paths with ':' or ',' cannot be carried and are refused here.
// Backslashes are refused in every mode: overlayfs unescapes them in
// upperdir and workdir.
func (o Overlay) Params(lowerdirPlus bool) ([]Param, error) {
	if len(o.Lowers) == 0 {
		return nil, fmt.Errorf("overlay needs at least one lower layer")
	}
	check := func(role, p string, forbidden string) error {
		if p == "" {
			return fmt.Errorf("overlay %s is empty", role)
		}
		if i := strings.IndexAny(p, forbidden); i >= 0 {
			return fmt.Errorf("overlay %s %q contains %q, which overlayfs options cannot carry on this kernel; use a path without it", role, p, p[i:i+1])
		}
		return nil
	}
	strict := "\\:,\n"
	if lowerdirPlus {
		strict = "\\\n"
	}
	for _, l := range o.Lowers {
		if err := check("lower", l, strict); err != nil {
			return nil, err
		}
	}
	if err := check("upper", o.Upper, strict); err != nil {
		return nil, err
	}
	if err := check("work", o.Work, strict); err != nil {
		return nil, err
	}
	ps := []Param{{Key: "source", Value: o.Source}}
	if lowerdirPlus {
		for _, l := range o.Lowers {
			ps = append(ps, Param{Key: "lowerdir+", Value: l})
		}
	} else {
		ps = append(ps, Param{Key: "lowerdir", Value: strings.Join(o.Lowers, ":")})
	}
	ps = append(ps, Param{Key: "upperdir", Value: o.Upper}, Param{Key: "workdir", Value: o.Work})
	return ps, nil
}
