package idmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// HostFiles are the files that say who on the host has which IDs: the
// subordinate ranges (newuidmap and newgidmap let a user map a user
// namespace onto them) and the local accounts.
type HostFiles struct {
	SubUID, SubGID, Passwd, Group string
}

// SystemFiles are the host's own.
var SystemFiles = HostFiles{SubUID: "/etc/subuid", SubGID: "/etc/subgid", Passwd: "/etc/passwd", Group: "/etc/group"}

// Claim is a range of host IDs that someone has: a line of /etc/subuid or
// /etc/subgid, or the ID of a local account in /etc/passwd or /etc/group.
type Claim struct {
	File string
	Line int
	Text string // the line as written, for an entry of a subordinate file
	// Owner is the name the line gives: the user (or uid) of a
	// subordinate range, the account's name.
	Owner   string
	Start   uint32
	Count   uint64 // 1 for an account
	Account bool
}

// End is one past the claim's last ID.
func (c Claim) End() uint64 { return uint64(c.Start) + c.Count }

func (c Claim) overlaps(start uint32, count uint64) bool {
	return uint64(c.Start) < uint64(start)+count && uint64(start) < c.End()
}

// String names the claim as a sysadmin finds it: the file, the line, and
// the line's text or the account.
func (c Claim) String() string {
	if c.Account {
		what, id := "user", "uid"
		if strings.HasSuffix(c.File, "group") {
			what, id = "group", "gid"
		}
		return fmt.Sprintf("the local %s %s (%s %d, %s line %d)", what, c.Owner, id, c.Start, c.File, c.Line)
	}
	return fmt.Sprintf("%s line %d %q", c.File, c.Line, c.Text)
}

// Host is what the host's files say: root's subordinate ranges apart from
// everyone else's claims.
type Host struct {
	Files HostFiles
	// RootUIDs and RootGIDs are root's own subordinate ranges, in file
	// order.
	RootUIDs, RootGIDs []Claim
	// UIDs and GIDs are everyone else's: other owners' subordinate
	// ranges and the local accounts' IDs.
	UIDs, GIDs []Claim
}

// ReadHost reads the files; a missing file claims nothing. It reads four
// small files and runs nothing: pre-start calls it on every start.
func ReadHost(f HostFiles) (*Host, error) {
	h := &Host{Files: f}
	// Names with uid 0 are root too (a "toor"): newuidmap goes by the
	// caller's uid, whatever the name.
	rootNames := map[string]bool{"root": true, "0": true}
	var err error
	var users, groups []Claim
	if users, err = readClaims(f.Passwd, ParseAccounts); err != nil {
		return nil, err
	}
	for _, u := range users {
		if u.Start == 0 {
			rootNames[u.Owner] = true
		}
	}
	if groups, err = readClaims(f.Group, ParseAccounts); err != nil {
		return nil, err
	}
	subu, err := readClaims(f.SubUID, ParseSubIDs)
	if err != nil {
		return nil, err
	}
	subg, err := readClaims(f.SubGID, ParseSubIDs)
	if err != nil {
		return nil, err
	}
	split := func(cs []Claim) (root, others []Claim) {
		for _, c := range cs {
			if rootNames[c.Owner] {
				root = append(root, c)
			} else {
				others = append(others, c)
			}
		}
		return root, others
	}
	h.RootUIDs, h.UIDs = split(subu)
	h.RootGIDs, h.GIDs = split(subg)
	h.UIDs = append(h.UIDs, users...)
	h.GIDs = append(h.GIDs, groups...)
	return h, nil
}

// readClaims parses the file at path with parse; a missing file claims
// nothing.
func readClaims(path string, parse func(io.Reader, string) ([]Claim, error)) ([]Claim, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parse(f, path)
}

// ParseSubIDs reads an /etc/subuid or /etc/subgid file ("owner:start:count"
// lines). A line that does not parse is skipped: shadow's newuidmap skips
// it too, so it gives nobody anything.
func ParseSubIDs(r io.Reader, file string) ([]Claim, error) {
	var out []Claim
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || f[0] == "" {
			continue
		}
		s, err1 := strconv.ParseUint(f[1], 10, 32)
		c, err2 := strconv.ParseUint(f[2], 10, 33)
		if err1 != nil || err2 != nil || c == 0 {
			continue
		}
		out = append(out, Claim{File: file, Line: n, Text: line, Owner: f[0], Start: uint32(s), Count: c})
	}
	return out, sc.Err()
}

// ParseAccounts reads the IDs of an /etc/passwd or /etc/group file
// ("name:x:id:..."); NIS "+" lines and lines that do not parse are skipped.
func ParseAccounts(r io.Reader, file string) ([]Claim, error) {
	var out []Claim
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1024*1024) // a group with many members: lines up to 1 MiB
	for n := 1; sc.Scan(); n++ {
		f := strings.SplitN(sc.Text(), ":", 4)
		if len(f) < 3 || f[0] == "" || f[0][0] == '#' || f[0][0] == '+' || f[0][0] == '-' {
			continue
		}
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		out = append(out, Claim{File: file, Line: n, Owner: f[0], Start: uint32(id), Count: 1, Account: true})
	}
	return out, sc.Err()
}

// Conflict is one range of a mapping that another owner has IDs in.
type Conflict struct {
	Kind  string // "uid" or "gid"
	Range Range  // the mapping's range
	Claim Claim
}

// Conflicts lists the claims of others that m's host ranges overlap: a
// user whose subordinate range overlaps can become the container's IDs
// (newuidmap), its processes and its files; a local account inside is
// one the container's users are, on the host.
func (h *Host) Conflicts(m *Mapping) []Conflict {
	var out []Conflict
	find := func(kind string, rs []Range, claims []Claim) {
		for _, r := range rs {
			for _, c := range claims {
				if c.overlaps(r.Outside, uint64(r.Count)) {
					out = append(out, Conflict{Kind: kind, Range: r, Claim: c})
				}
			}
		}
	}
	find("uid", m.UID, h.UIDs)
	find("gid", m.GID, h.GIDs)
	return out
}

// Check refuses a mapping whose host IDs another user or group has, in one
// line that names the mapping, who else has its IDs (file and line) and
// what to do.
func (h *Host) Check(m *Mapping) error {
	cs := h.Conflicts(m)
	if len(cs) == 0 {
		return nil
	}
	return conflictError("lxc.idmap", cs)
}

// CheckHost reads the host's files and checks m against them (see
// Host.Check): what pre-start runs before an unprivileged container starts.
func CheckHost(m *Mapping, f HostFiles) error {
	h, err := ReadHost(f)
	if err != nil {
		return fmt.Errorf("checking lxc.idmap against the host's IDs: %w", err)
	}
	return h.Check(m)
}

// maxListed bounds the claims one error line names per range.
const maxListed = 3

func conflictError(what string, cs []Conflict) error {
	type group struct {
		kind   string
		r      Range
		claims []string
	}
	var groups []*group
	var owners, accounts []string
	dels := map[string][]string{} // owner: usermod options taking the ranges
	seen := map[string]bool{}
	for _, c := range cs {
		var g *group
		for _, x := range groups {
			if x.kind == c.Kind && x.r == c.Range {
				g = x
			}
		}
		if g == nil {
			g = &group{kind: c.Kind, r: c.Range}
			groups = append(groups, g)
		}
		g.claims = append(g.claims, c.Claim.String())
		key := c.Kind + " " + c.Claim.String()
		if seen[key] {
			continue
		}
		seen[key] = true
		if c.Claim.Account {
			accounts = append(accounts, fmt.Sprintf("%s %s", map[string]string{"uid": "user", "gid": "group"}[c.Kind], c.Claim.Owner))
			continue
		}
		if _, ok := dels[c.Claim.Owner]; !ok {
			owners = append(owners, c.Claim.Owner)
		}
		opt := map[string]string{"uid": "--del-subuids", "gid": "--del-subgids"}[c.Kind]
		dels[c.Claim.Owner] = append(dels[c.Claim.Owner], fmt.Sprintf("%s %d-%d", opt, c.Claim.Start, c.Claim.End()-1))
	}
	var parts []string
	for _, g := range groups {
		claims := g.claims
		if len(claims) > maxListed {
			claims = append(claims[:maxListed:maxListed], fmt.Sprintf("%d more", len(g.claims)-maxListed))
		}
		kind := map[string]string{"uid": "u", "gid": "g"}[g.kind]
		parts = append(parts, fmt.Sprintf("%s %q (host %ss %d-%d) overlaps %s", what, fmt.Sprintf("%s %d %d %d", kind, g.r.Inside, g.r.Outside, g.r.Count), g.kind, g.r.Outside, uint64(g.r.Outside)+uint64(g.r.Count)-1, strings.Join(claims, " and ")))
	}
	var why []string
	if len(owners) > 0 {
		why = append(why, fmt.Sprintf("%s can become the container's users with newuidmap/newgidmap (its processes, its files)", strings.Join(owners, ", ")))
	}
	if len(accounts) > 0 {
		why = append(why, fmt.Sprintf("the local %s is one of the container's users on the host", strings.Join(accounts, ", ")))
	}
	fix := "map the container onto IDs no other user or group has (init --unprivileged gives root a range of its own)"
	var takes []string
	for _, o := range owners {
		takes = append(takes, fmt.Sprintf("usermod %s %s", strings.Join(dels[o], " "), o))
	}
	if len(takes) > 0 {
		fix += ", or take the range from " + strings.Join(owners, ", ") + " (" + strings.Join(takes, "; ") + ")"
	}
	return fmt.Errorf("%s: %s; %s", strings.Join(parts, "; "), strings.Join(why, "; "), fix)
}

// RootRange is root's subordinate ranges that unprivileged containers are
// mapped into: block 0 (the first MinRange IDs) is the shared mapping of
// every container init writes without --isolated, blocks 1, 2, ... are
// isolated containers' own.
type RootRange struct {
	UID, GID Claim
}

// Blocks is how many MinRange blocks the range holds (the smaller of the
// uid and gid ranges).
func (r RootRange) Blocks() uint64 {
	n := r.UID.Count
	if r.GID.Count < n {
		n = r.GID.Count
	}
	return n / MinRange
}

// Block is the mapping of block k of the range.
func (r RootRange) Block(k uint64) *Mapping {
	return &Mapping{
		UID: []Range{{Inside: 0, Outside: uint32(uint64(r.UID.Start) + k*MinRange), Count: MinRange}},
		GID: []Range{{Inside: 0, Outside: uint32(uint64(r.GID.Start) + k*MinRange), Count: MinRange}},
	}
}

// BlockOf reports which block of the range m is: a single MinRange uid
// and gid range each, at the same block of root's uid and gid ranges.
func (r RootRange) BlockOf(m *Mapping) (uint64, bool) {
	if m == nil || len(m.UID) != 1 || len(m.GID) != 1 {
		return 0, false
	}
	u, g := m.UID[0], m.GID[0]
	if u.Inside != 0 || g.Inside != 0 || u.Count != MinRange || g.Count != MinRange {
		return 0, false
	}
	if u.Outside < r.UID.Start || g.Outside < r.GID.Start {
		return 0, false
	}
	du, dg := uint64(u.Outside-r.UID.Start), uint64(g.Outside-r.GID.Start)
	if du != dg || du%MinRange != 0 || du/MinRange >= r.Blocks() {
		return 0, false
	}
	return du / MinRange, true
}

// Root is root's first range of at least MinRange IDs in each file; ok is
// false when root lacks one in either.
func (h *Host) Root() (r RootRange, ok bool) {
	first := func(cs []Claim) (Claim, bool) {
		for _, c := range cs {
			if c.Count >= MinRange {
				return c, true
			}
		}
		return Claim{}, false
	}
	u, uok := first(h.RootUIDs)
	g, gok := first(h.RootGIDs)
	return RootRange{UID: u, GID: g}, uok && gok
}

// CheckRoot refuses root's range r when another user or group has IDs in
// it, naming both lines and the way out: every container mapped into the
// range would be theirs too.
func (h *Host) CheckRoot(r RootRange) error {
	type hit struct {
		root, other Claim
	}
	var hits []hit
	for _, x := range []struct {
		root   Claim
		claims []Claim
	}{{r.UID, h.UIDs}, {r.GID, h.GIDs}} {
		for _, c := range x.claims {
			if c.overlaps(x.root.Start, x.root.Count) {
				hits = append(hits, hit{x.root, c})
			}
		}
	}
	if len(hits) == 0 {
		return nil
	}
	var parts, owners []string
	seen := map[string]bool{}
	for i, x := range hits {
		if i == maxListed {
			parts = append(parts, fmt.Sprintf("and %d more", len(hits)-maxListed))
			break
		}
		parts = append(parts, fmt.Sprintf("root's range %s overlaps %s", x.root, x.other))
		if !seen[x.other.Owner] {
			seen[x.other.Owner] = true
			owners = append(owners, x.other.Owner)
		}
	}
	return fmt.Errorf("%s: root's unprivileged containers would share host IDs with %s, who could act on their processes and files or be acted on by them; remove root's range (usermod --del-subuids %d-%d --del-subgids %d-%d root) and run init again, which then gives root a range no one else has (containers already mapped into the old range are refused at start until moved), or move the other ranges and accounts out of it", strings.Join(parts, "; "), strings.Join(owners, ", "), r.UID.Start, r.UID.End()-1, r.GID.Start, r.GID.End()-1)
}

// Allocation of root's range where it has none.
const (
	// AllocCount is the size of the range given to root: a billion IDs,
	// as container managers give root (Incus: root:1000000:1000000000),
	// room for 15258 isolated containers.
	AllocCount = 1_000_000_000
	// allocAlign makes the start a round number a reader recognises.
	allocAlign = 1_000_000_000
	// MaxID is the highest ID: (uid_t)-1 means "no ID" to the kernel.
	MaxID = 1<<32 - 2
	// DefaultSubIDMax is shadow's SUB_UID_MAX and SUB_GID_MAX where
	// /etc/login.defs sets none: useradd allocates below it.
	DefaultSubIDMax = 600100000
)

// Allocate picks root's new range: the first multiple of 10^9 above every
// subordinate range in either file (root's included) and above floor (the
// highest ID useradd allocates from), AllocCount IDs or what fits below
// MaxID, never a local account inside. Where no multiple of 10^9 has room,
// the first multiple of MinRange that has.
func (h *Host) Allocate(floor uint64) (start uint32, count uint64, err error) {
	for _, cs := range [][]Claim{h.RootUIDs, h.RootGIDs, h.UIDs, h.GIDs} {
		for _, c := range cs {
			if !c.Account && c.End() > floor {
				floor = c.End()
			}
		}
	}
	var accounts []uint64
	for _, c := range append(append([]Claim{}, h.UIDs...), h.GIDs...) {
		if c.Account {
			accounts = append(accounts, uint64(c.Start))
		}
	}
	sort.Slice(accounts, func(i, j int) bool { return accounts[i] < accounts[j] })
	for _, align := range []uint64{allocAlign, MinRange} {
		s := roundUp(floor, align)
		for s+MinRange-1 <= MaxID {
			n := min(uint64(AllocCount), MaxID+1-s)
			blocked := false
			for _, a := range accounts {
				if a >= s && a < s+n {
					s, blocked = roundUp(a+1, align), true
					break
				}
			}
			if !blocked {
				return uint32(s), n, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("no room for a range of %d IDs above %d (every subordinate range and SUB_UID_MAX/SUB_GID_MAX of login.defs) below %d: give root a range of its own by hand in %s and %s", MinRange, floor, uint64(MaxID), h.Files.SubUID, h.Files.SubGID)
}

func roundUp(n, align uint64) uint64 {
	return (n + align - 1) / align * align
}

// SubIDMax reads SUB_UID_MAX and SUB_GID_MAX from a login.defs file (the
// larger), shadow's default where neither is set or the file is missing.
func SubIDMax(loginDefs string) uint64 {
	f, err := os.Open(loginDefs)
	if err != nil {
		return DefaultSubIDMax
	}
	defer f.Close()
	return parseSubIDMax(f)
}

func parseSubIDMax(r io.Reader) uint64 {
	max := uint64(0)
	set := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || (f[0] != "SUB_UID_MAX" && f[0] != "SUB_GID_MAX") {
			continue
		}
		v, err := strconv.ParseUint(f[1], 0, 64)
		if err != nil {
			continue
		}
		set[f[0]] = true
		if v > max {
			max = v
		}
	}
	// One of them unset: useradd uses the default for it.
	if len(set) < 2 && max < DefaultSubIDMax {
		max = DefaultSubIDMax
	}
	return max
}
