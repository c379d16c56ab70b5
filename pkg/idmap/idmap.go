package idmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Range maps Count IDs from Inside (in the container) to Outside (on the
// host), as one lxc.idmap line or one line of /proc/PID/uid_map does.
type Range struct {
	Inside, Outside, Count uint32
}

// Mapping is a container's lxc.idmap: its uid and gid ranges.
type Mapping struct {
	UID, GID []Range
}

// ConfigKey is the LXC config key that makes a container unprivileged.
const ConfigKey = "lxc.idmap"

// ParseLXC reads the values of lxc.idmap keys ("u 0 100000 65536"). No
// values is (nil, nil): a privileged container. A mapping must map the
// container's root for both uids and gids, as LXC requires too.
func ParseLXC(values []string) (*Mapping, error) {
	if len(values) == 0 {
		return nil, nil
	}
	m := &Mapping{}
	for _, v := range values {
		f := strings.Fields(v)
		if len(f) != 4 {
			return nil, fmt.Errorf("lxc.idmap = %s: want \"u|g|b INSIDE OUTSIDE COUNT\"", v)
		}
		var n [3]uint32
		for i, s := range f[1:] {
			x, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("lxc.idmap = %s: %q is not a number", v, s)
			}
			n[i] = uint32(x)
		}
		r := Range{Inside: n[0], Outside: n[1], Count: n[2]}
		if r.Count == 0 {
			return nil, fmt.Errorf("lxc.idmap = %s: a range of 0 IDs", v)
		}
		switch f[0] {
		case "u":
			m.UID = append(m.UID, r)
		case "g":
			m.GID = append(m.GID, r)
		case "b":
			m.UID = append(m.UID, r)
			m.GID = append(m.GID, r)
		default:
			return nil, fmt.Errorf("lxc.idmap = %s: type %q is not u, g or b", v, f[0])
		}
	}
	if _, ok := m.RootUID(); !ok {
		return nil, errors.New("lxc.idmap maps no uid to the container's root (u 0 ...)")
	}
	if _, ok := m.RootGID(); !ok {
		return nil, errors.New("lxc.idmap maps no gid to the container's root (g 0 ...)")
	}
	return m, nil
}

func toHost(rs []Range, id uint32) (uint32, bool) {
	for _, r := range rs {
		if id >= r.Inside && uint64(id) < uint64(r.Inside)+uint64(r.Count) {
			return r.Outside + (id - r.Inside), true
		}
	}
	return 0, false
}

// RootUID is the host uid of the container's root.
func (m *Mapping) RootUID() (uint32, bool) { return toHost(m.UID, 0) }

// RootGID is the host gid of the container's root.
func (m *Mapping) RootGID() (uint32, bool) { return toHost(m.GID, 0) }

// String is the mapping in one canonical line, as the layer's ownership
// record and status show it: "u:0:100000:65536 g:0:100000:65536".
func (m *Mapping) String() string {
	if m == nil {
		return ""
	}
	var parts []string
	for _, r := range m.UID {
		parts = append(parts, fmt.Sprintf("u:%d:%d:%d", r.Inside, r.Outside, r.Count))
	}
	for _, r := range m.GID {
		parts = append(parts, fmt.Sprintf("g:%d:%d:%d", r.Inside, r.Outside, r.Count))
	}
	return strings.Join(parts, " ")
}

// Lines are the lxc.idmap values of m, one per range.
func (m *Mapping) Lines() []string {
	var out []string
	for _, r := range m.UID {
		out = append(out, fmt.Sprintf("u %d %d %d", r.Inside, r.Outside, r.Count))
	}
	for _, r := range m.GID {
		out = append(out, fmt.Sprintf("g %d %d %d", r.Inside, r.Outside, r.Count))
	}
	return out
}

// procMap is the text of a /proc/PID/uid_map or gid_map file for rs.
func procMap(rs []Range) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%d %d %d\n", r.Inside, r.Outside, r.Count)
	}
	return b.String()
}

// IsIdentity reports whether the text of a /proc/self/uid_map is the
// initial user namespace's ("0 0 4294967295"): a process that reads
// anything else runs in a user namespace, as an unprivileged container's
// pre-mount hook does.
func IsIdentity(uidMap string) bool {
	f := strings.Fields(uidMap)
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

// MinRange is the smallest subordinate range init accepts: a distribution's
// IDs (nobody is 65534) must fit.
const MinRange = 65536

// SubIDRange finds user's first range of at least MinRange IDs in an
// /etc/subuid or /etc/subgid file ("name:start:count" lines). found is
// false when the user has none.
func SubIDRange(r io.Reader, user string) (start, count uint32, found bool, err error) {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || f[0] != user {
			continue
		}
		s, err1 := strconv.ParseUint(f[1], 10, 32)
		c, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil {
			return 0, 0, false, fmt.Errorf("line %d %q: want NAME:START:COUNT", n, line)
		}
		if c >= MinRange {
			return uint32(s), uint32(c), true, nil
		}
	}
	return 0, 0, false, sc.Err()
}
