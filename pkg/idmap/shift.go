package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Inverse is the mapping that takes m's host IDs back to the container's:
// as the idmap of a mount (a user namespace with it), a file stored with a
// host ID of m (100000 with "u 0 100000 65536") shows with the ID the
// container saw (0). IDs outside m's ranges show as the overflow ID
// (nobody), as they did inside the container.
func (m *Mapping) Inverse() *Mapping {
	inv := func(rs []Range) []Range {
		out := make([]Range, len(rs))
		for i, r := range rs {
			out[i] = Range{Inside: r.Outside, Outside: r.Inside, Count: r.Count}
		}
		return out
	}
	return &Mapping{UID: inv(m.UID), GID: inv(m.GID)}
}

// ParseRecord reads a mapping in String's form ("u:0:100000:65536
// g:0:100000:65536"), as a layer's ownership record holds it.
func ParseRecord(s string) (*Mapping, error) {
	var lines []string
	for _, f := range strings.Fields(s) {
		p := strings.Split(f, ":")
		if len(p) != 4 || (p[0] != "u" && p[0] != "g") {
			return nil, fmt.Errorf("idmap record %q: %q is not u|g:INSIDE:OUTSIDE:COUNT", s, f)
		}
		for _, n := range p[1:] {
			if _, err := strconv.ParseUint(n, 10, 32); err != nil {
				return nil, fmt.Errorf("idmap record %q: %q is not a number", s, n)
			}
		}
		lines = append(lines, strings.Join(p, " "))
	}
	m, err := ParseLXC(lines)
	if err != nil {
		return nil, fmt.Errorf("idmap record %q: %w", s, err)
	}
	if m == nil {
		return nil, fmt.Errorf("idmap record %q maps nothing", s)
	}
	return m, nil
}

// ReadRecord reads the ownership record of the writable layer at root
// (holding upper and work): the mapping its files were written under, nil
// for a layer without one (written by a privileged container, or new).
func ReadRecord(root string) (*Mapping, error) {
	b, err := os.ReadFile(filepath.Join(root, RecordName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("layer ownership record: %w", err)
	}
	return ParseRecord(strings.TrimSpace(string(b)))
}
