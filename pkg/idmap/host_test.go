package idmap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hostFiles writes a host's files into a temp dir; "" leaves a file out.
func hostFiles(t *testing.T, subuid, subgid, passwd, group string) HostFiles {
	t.Helper()
	dir := t.TempDir()
	f := HostFiles{SubUID: filepath.Join(dir, "subuid"), SubGID: filepath.Join(dir, "subgid"), Passwd: filepath.Join(dir, "passwd"), Group: filepath.Join(dir, "group")}
	for p, s := range map[string]string{f.SubUID: subuid, f.SubGID: subgid, f.Passwd: passwd, f.Group: group} {
		if s != "" {
			if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

const (
	debianPasswd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nalice:x:1000:1000:,,,:/home/alice:/bin/bash\n"
	debianGroup  = "root:x:0:\nnogroup:x:65534:\nalice:x:1000:\n"
)

func mustLXC(t *testing.T, lines ...string) *Mapping {
	t.Helper()
	m, err := ParseLXC(lines)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseSubIDsSkipsWhatNewuidmapSkips(t *testing.T) {
	cs, err := ParseSubIDs(strings.NewReader("# c\n\nalice:100000:65536\nbroken\nbob:x:1\ncarol:200000:0\n1001:300000:65536\n"), "/etc/subuid")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Owner != "alice" || cs[0].Line != 3 || cs[1].Owner != "1001" || cs[1].Start != 300000 || cs[1].Line != 7 {
		t.Fatalf("got %+v", cs)
	}
	if got := cs[0].String(); got != `/etc/subuid line 3 "alice:100000:65536"` {
		t.Fatalf("String %q", got)
	}
}

func TestParseAccounts(t *testing.T) {
	cs, err := ParseAccounts(strings.NewReader(debianPasswd+"+nis::::\nbad:x:y:0\n"), "/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 || cs[2].Owner != "alice" || cs[2].Start != 1000 || !cs[2].Account {
		t.Fatalf("got %+v", cs)
	}
	if got := cs[2].String(); got != "the local user alice (uid 1000, /etc/passwd line 3)" {
		t.Fatalf("String %q", got)
	}
}

// The Debian case of the issue: the first user's 100000:65536 and a
// container mapped onto it.
func TestCheckRefusesAnotherUsersRange(t *testing.T) {
	f := hostFiles(t, "root:1000000000:1000000000\nalice:100000:65536\n", "alice:100000:65536\nroot:1000000000:1000000000\n", debianPasswd, debianGroup)
	err := CheckHost(mustLXC(t, "u 0 100000 65536", "g 0 100000 65536"), f)
	if err == nil {
		t.Fatal("a mapping onto alice's range accepted")
	}
	for _, want := range []string{`"u 0 100000 65536" (host uids 100000-165535) overlaps ` + f.SubUID + ` line 2 "alice:100000:65536"`,
		`overlaps ` + f.SubGID + ` line 1 "alice:100000:65536"`, "newuidmap", "usermod --del-subuids 100000-165535 --del-subgids 100000-165535 alice"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("not one line: %q", err)
	}
	// Partly inside is inside.
	if err := CheckHost(mustLXC(t, "u 0 165535 65536", "g 0 1000000000 65536"), f); err == nil || !strings.Contains(err.Error(), "alice") {
		t.Fatalf("a range sharing one uid: %v", err)
	}
	// Root's own range is its containers'.
	if err := CheckHost(mustLXC(t, "u 0 1000065536 65536", "g 0 1000065536 65536"), f); err != nil {
		t.Fatalf("a block of root's range: %v", err)
	}
	// Next to alice's, sharing nothing.
	if err := CheckHost(mustLXC(t, "u 0 165536 65536", "g 0 165536 65536"), f); err != nil {
		t.Fatalf("a range beside alice's: %v", err)
	}
}

func TestCheckRefusesLocalAccountsInside(t *testing.T) {
	f := hostFiles(t, "", "", debianPasswd+"svc:x:170000:170000::/:/bin/false\n", debianGroup+"shared:x:180001:\n")
	err := CheckHost(mustLXC(t, "u 0 165536 65536", "g 0 165536 65536"), f)
	if err == nil || !strings.Contains(err.Error(), "the local user svc (uid 170000, "+f.Passwd+" line 4)") || !strings.Contains(err.Error(), "the local group shared (gid 180001, "+f.Group+" line 4)") {
		t.Fatalf("accounts inside: %v", err)
	}
	// Missing files claim nothing.
	if err := CheckHost(mustLXC(t, "u 0 100000 65536", "g 0 100000 65536"), hostFiles(t, "", "", "", "")); err != nil {
		t.Fatal(err)
	}
}

func TestRootNamedByUID(t *testing.T) {
	h, err := ReadHost(hostFiles(t, "0:100000:65536\ntoor:300000:65536\n", "root:100000:65536\n", debianPasswd+"toor:x:0:0::/root:/bin/sh\n", debianGroup))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.RootUIDs) != 2 || len(h.UIDs) != 4 { // 4 accounts, no other range
		t.Fatalf("root's %v, others %v", h.RootUIDs, h.UIDs)
	}
}

func TestCheckRootNamesBothLines(t *testing.T) {
	f := hostFiles(t, "alice:100000:65536\nroot:100000:65536\n", "root:100000:65536\n", debianPasswd, debianGroup)
	h, err := ReadHost(f)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := h.Root()
	if !ok {
		t.Fatal("root's range not found")
	}
	err = h.CheckRoot(r)
	if err == nil {
		t.Fatal("root's range overlapping alice's accepted")
	}
	for _, want := range []string{`root's range ` + f.SubUID + ` line 2 "root:100000:65536" overlaps ` + f.SubUID + ` line 1 "alice:100000:65536"`, "alice", "usermod --del-subuids 100000-165535 --del-subgids 100000-165535 root", "run init again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	f = hostFiles(t, "root:100000:1000000\n", "root:100000:1000000\n", debianPasswd+"svc:x:500000:500000::/:/bin/false\n", debianGroup)
	h, _ = ReadHost(f)
	r, _ = h.Root()
	if err := h.CheckRoot(r); err == nil || !strings.Contains(err.Error(), "the local user svc (uid 500000") {
		t.Fatalf("an account inside root's range: %v", err)
	}
}

func TestAllocate(t *testing.T) {
	for _, tc := range []struct {
		name, subuid, subgid, passwd string
		floor                        uint64
		start, count                 uint64
	}{
		{"empty, Debian defaults", "", "", debianPasswd, DefaultSubIDMax, 1_000_000_000, 1_000_000_000},
		{"the first user's range", "alice:100000:65536\n", "alice:100000:65536\n", debianPasswd, DefaultSubIDMax, 1_000_000_000, 1_000_000_000},
		{"a range above 10^9", "alice:100000:65536\nbig:1000000000:1500000000\n", "", debianPasswd, DefaultSubIDMax, 3_000_000_000, 1_000_000_000},
		{"little room left: what fits", "big:100000:3500000000\n", "", debianPasswd, DefaultSubIDMax, 4_000_000_000, MaxID + 1 - 4_000_000_000},
		{"no multiple of 10^9 fits", "big:100000:4100000000\n", "", debianPasswd, DefaultSubIDMax, 4_100_100_000 + 65536 - 4_100_100_000%65536, MaxID + 1 - (4_100_100_000 + 65536 - 4_100_100_000%65536)},
		{"an account in the way", "", "", debianPasswd + "svc:x:1500000000:1::/:/bin/false\n", DefaultSubIDMax, 2_000_000_000, 1_000_000_000},
		{"SUB_UID_MAX raised", "", "", debianPasswd, 1_200_000_000, 2_000_000_000, 1_000_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ReadHost(hostFiles(t, tc.subuid, tc.subgid, tc.passwd, debianGroup))
			if err != nil {
				t.Fatal(err)
			}
			s, n, err := h.Allocate(tc.floor)
			if err != nil || uint64(s) != tc.start || n != tc.count {
				t.Fatalf("got %d:%d %v, want %d:%d", s, n, err, tc.start, tc.count)
			}
			// Whatever it gives overlaps nobody.
			m := &Mapping{UID: []Range{{0, s, MinRange}}, GID: []Range{{0, s, MinRange}}}
			if cs := h.Conflicts(m); len(cs) > 0 {
				t.Fatalf("allocated range overlaps %v", cs)
			}
		})
	}
	h, _ := ReadHost(hostFiles(t, "big:100000:4294900000\n", "", "", ""))
	if _, _, err := h.Allocate(DefaultSubIDMax); err == nil || !strings.Contains(err.Error(), "by hand") {
		t.Fatalf("no room: %v", err)
	}
}

func TestSubIDMax(t *testing.T) {
	for in, want := range map[string]uint64{
		"":                                     DefaultSubIDMax,
		"SUB_UID_MAX 700000000\n":              700000000, // the gid one is the default, lower
		"SUB_UID_MAX 1000\nSUB_GID_MAX 2000\n": 2000,
		"#SUB_UID_MAX 900000000\n":             DefaultSubIDMax,
		"SUB_UID_MAX\t\t600100000\nSUB_GID_MAX\t\t800000000\n": 800000000,
	} {
		if got := parseSubIDMax(strings.NewReader(in)); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}

func TestBlocks(t *testing.T) {
	r := RootRange{UID: Claim{Start: 1_000_000_000, Count: 1_000_000_000}, GID: Claim{Start: 2_000_000_000, Count: 3 * MinRange}}
	if r.Blocks() != 3 {
		t.Fatalf("blocks %d", r.Blocks())
	}
	b := r.Block(2)
	if got := b.String(); got != "u:0:1000131072:65536 g:0:2000131072:65536" {
		t.Fatalf("block 2: %s", got)
	}
	if k, ok := r.BlockOf(b); !ok || k != 2 {
		t.Fatalf("BlockOf(block 2) = %d %v", k, ok)
	}
	for _, m := range []*Mapping{
		mustLXC(t, "u 0 1000131072 65536", "g 0 2000065536 65536"), // different blocks
		mustLXC(t, "u 0 1000131073 65536", "g 0 2000131073 65536"), // not on a boundary
		mustLXC(t, "u 0 1000196608 65536", "g 0 2000196608 65536"), // past the gid range
		mustLXC(t, "u 0 100000 65536", "g 0 100000 65536"),         // outside
		mustLXC(t, "u 0 1000131072 1000", "g 0 2000131072 1000"),   // not a block
	} {
		if k, ok := r.BlockOf(m); ok {
			t.Errorf("%s taken for block %d", m, k)
		}
	}
}

func TestParseRecord(t *testing.T) {
	m := mustLXC(t, "u 0 100000 65536", "g 0 200000 65536")
	got, err := ParseRecord(m.String())
	if err != nil || got.String() != m.String() {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"", "u:0:1", "u:0:100000:65536"} {
		if _, err := ParseRecord(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// EnsureRoot gives root a range where it has none, appending to the files
// and keeping their other lines, owner and mode; again, it finds it.
func TestEnsureRootWritesAndKeeps(t *testing.T) {
	f := hostFiles(t, "alice:100000:65536\nbob:165536:65536", "alice:100000:65536\nbob:165536:65536\n", debianPasswd, debianGroup)
	os.Chmod(f.SubUID, 0o640)
	defs := filepath.Join(filepath.Dir(f.SubUID), "login.defs")
	os.WriteFile(defs, []byte("SUB_UID_MAX 600100000\nSUB_GID_MAX 600100000\n"), 0o644)
	r, wrote, err := EnsureRoot(f, defs)
	if err != nil {
		t.Fatal(err)
	}
	if len(wrote) != 2 || wrote[0] != "root:1000000000:1000000000 to "+f.SubUID {
		t.Fatalf("wrote %q", wrote)
	}
	if r.UID.Start != 1_000_000_000 || r.GID.Count != 1_000_000_000 {
		t.Fatalf("range %+v", r)
	}
	b, _ := os.ReadFile(f.SubUID)
	if string(b) != "alice:100000:65536\nbob:165536:65536\nroot:1000000000:1000000000\n" {
		t.Fatalf("subuid now %q", b)
	}
	if fi, _ := os.Stat(f.SubUID); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	for _, p := range []string{f.SubUID + ".lock", f.SubGID + ".lock"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("lock %s left", p)
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(filepath.Dir(f.SubUID), ".*new")); len(ents) > 0 {
		t.Fatalf("temp files left: %v", ents)
	}
	r2, wrote, err := EnsureRoot(f, defs)
	if err != nil || len(wrote) != 0 || r2 != r {
		t.Fatalf("second run: %+v %q %v", r2, wrote, err)
	}
}

// Inits at the same time agree on one range, written once.
func TestEnsureRootConcurrent(t *testing.T) {
	f := hostFiles(t, "alice:100000:65536\n", "alice:100000:65536\n", debianPasswd, debianGroup)
	var wg sync.WaitGroup
	ranges := make([]RootRange, 8)
	errs := make([]error, 8)
	for i := range ranges {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ranges[i], _, errs[i] = EnsureRoot(f, "/nonexistent")
		}(i)
	}
	wg.Wait()
	for i := range ranges {
		if errs[i] != nil || ranges[i] != ranges[0] {
			t.Fatalf("run %d: %+v %v (run 0: %+v)", i, ranges[i], errs[i], ranges[0])
		}
	}
	b, _ := os.ReadFile(f.SubUID)
	if strings.Count(string(b), "root:") != 1 {
		t.Fatalf("subuid: %q", b)
	}
}

// A lock of useradd's (FILE.lock naming a live process) is waited for; a
// stale one (its process gone) is taken over.
func TestLockFileStale(t *testing.T) {
	f := hostFiles(t, "", "", "", "")
	os.WriteFile(f.SubUID+".lock", []byte("999999999"), 0o600) // no such PID
	unlock, err := lockShadow(f)
	if err != nil {
		t.Fatalf("a stale lock: %v", err)
	}
	unlock()
	if _, err := os.Lstat(f.SubUID + ".lock"); err == nil {
		t.Fatal("lock left")
	}
	// PID 1 is alive: its lock is waited for, bounded, then refused.
	os.WriteFile(f.SubGID+".lock", []byte("1"), 0o600)
	saved := lockWait
	lockWait = 200 * time.Millisecond
	defer func() { lockWait = saved }()
	if _, err := lockShadow(f); err == nil || !strings.Contains(err.Error(), f.SubGID+".lock is locked by process 1") {
		t.Fatalf("a live lock: %v", err)
	}
	if _, err := os.Lstat(f.SubUID + ".lock"); err == nil {
		t.Fatal("the refusal left the subuid lock")
	}
	if b, _ := os.ReadFile(f.SubGID + ".lock"); string(b) != "1" {
		t.Fatal("the live lock was touched")
	}
}

func TestAppendLineNewFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "subgid")
	if err := appendLine(p, "root:1:65536"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%v %v", fi, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 0 || st.Gid != 0) {
		t.Fatalf("owner %d:%d", st.Uid, st.Gid)
	}
	link := filepath.Join(t.TempDir(), "subuid")
	os.Symlink(p, link)
	if err := appendLine(link, "root:1:65536"); err == nil {
		t.Fatal("wrote through a symlink")
	}
}

func TestAddRemoveRange(t *testing.T) {
	f := hostFiles(t, "alice:100000:65536\nroot:1:2", "", "", "")
	if err := AddRange(f, "root", 3000000000, 65536); err != nil {
		t.Fatal(err)
	}
	if err := AddRange(f, "root", 3000000000, 65536); err != nil { // again: once
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f.SubUID)
	g, _ := os.ReadFile(f.SubGID)
	if string(b) != "alice:100000:65536\nroot:1:2\nroot:3000000000:65536\n" || string(g) != "root:3000000000:65536\n" {
		t.Fatalf("after AddRange: %q %q", b, g)
	}
	if err := RemoveRange(f, "root", 3000000000, 65536); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(f.SubUID)
	g, _ = os.ReadFile(f.SubGID)
	if string(b) != "alice:100000:65536\nroot:1:2\n" || string(g) != "" {
		t.Fatalf("after RemoveRange: %q %q", b, g)
	}
}

// What pre-start adds to every unprivileged start: reading and checking
// the host's four files (here Debian's, with a few users).
func BenchmarkCheckHost(b *testing.B) {
	dir := b.TempDir()
	f := HostFiles{SubUID: filepath.Join(dir, "subuid"), SubGID: filepath.Join(dir, "subgid"), Passwd: filepath.Join(dir, "passwd"), Group: filepath.Join(dir, "group")}
	var sub, pw, gr strings.Builder
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&sub, "user%d:%d:65536\n", i, 100000+i*65536)
		fmt.Fprintf(&pw, "user%d:x:%d:%d:,,,:/home/user%d:/bin/bash\n", i, 1000+i, 1000+i, i)
		fmt.Fprintf(&gr, "user%d:x:%d:\n", i, 1000+i)
	}
	sub.WriteString("root:1000000000:1000000000\n")
	os.WriteFile(f.SubUID, []byte(sub.String()), 0o644)
	os.WriteFile(f.SubGID, []byte(sub.String()), 0o644)
	os.WriteFile(f.Passwd, []byte(debianPasswd+pw.String()), 0o644)
	os.WriteFile(f.Group, []byte(debianGroup+gr.String()), 0o644)
	m := &Mapping{UID: []Range{{0, 1000065536, 65536}}, GID: []Range{{0, 1000065536, 65536}}}
	for i := 0; i < b.N; i++ {
		if err := CheckHost(m, f); err != nil {
			b.Fatal(err)
		}
	}
}
