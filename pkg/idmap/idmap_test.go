package idmap

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseLXC(t *testing.T) {
	m, err := ParseLXC([]string{"u 0 100000 65536", "g 0 200000 65536"})
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := m.RootUID(); u != 100000 {
		t.Fatalf("root uid %d", u)
	}
	if g, _ := m.RootGID(); g != 200000 {
		t.Fatalf("root gid %d", g)
	}
	if got := m.String(); got != "u:0:100000:65536 g:0:200000:65536" {
		t.Fatalf("String %q", got)
	}
	if got := strings.Join(m.Lines(), ";"); got != "u 0 100000 65536;g 0 200000 65536" {
		t.Fatalf("Lines %q", got)
	}
	if got := procMap(m.UID); got != "0 100000 65536\n" {
		t.Fatalf("procMap %q", got)
	}
	b, err := ParseLXC([]string{"b 0 300000 10"})
	if err != nil || len(b.UID) != 1 || len(b.GID) != 1 {
		t.Fatalf("b: %v %v", b, err)
	}
	if m, err := ParseLXC(nil); m != nil || err != nil {
		t.Fatalf("no lines: %v %v", m, err)
	}
	for _, bad := range [][]string{
		{"u 0 100000"},
		{"x 0 100000 65536", "g 0 100000 65536"},
		{"u 0 100000 0", "g 0 100000 65536"},
		{"u 0 -1 65536", "g 0 100000 65536"},
		{"u 1 100000 65536", "g 0 100000 65536"}, // no root
		{"u 0 100000 65536"},                     // no gid
	} {
		if _, err := ParseLXC(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestIsIdentity(t *testing.T) {
	if !IsIdentity("         0          0 4294967295\n") {
		t.Fatal("host map not recognised")
	}
	if IsIdentity("         0     100000      65536\n") {
		t.Fatal("container map taken for the host's")
	}
}

func TestSubIDRange(t *testing.T) {
	f := "# comment\nalice:100000:65536\nroot:1000:10\nroot:200000:65536\nroot:300000:65536\n"
	s, c, ok, err := SubIDRange(strings.NewReader(f), "root")
	if err != nil || !ok || s != 200000 || c != 65536 {
		t.Fatalf("got %d %d %v %v", s, c, ok, err)
	}
	if _, _, ok, _ := SubIDRange(strings.NewReader("alice:100000:65536\n"), "root"); ok {
		t.Fatal("found a range root does not have")
	}
	if _, _, _, err := SubIDRange(strings.NewReader("root:x:65536\n"), "root"); err == nil {
		t.Fatal("a broken line accepted")
	}
}

func TestCheckLayer(t *testing.T) {
	m, _ := ParseLXC([]string{"u 0 100000 65536", "g 0 100000 65536"})
	other, _ := ParseLXC([]string{"u 0 200000 65536", "g 0 200000 65536"})
	root := t.TempDir()
	upper, work := filepath.Join(root, "upper"), filepath.Join(root, "work")
	os.Mkdir(upper, 0o755)
	os.Mkdir(work, 0o700)
	if err := CheckLayer(root, upper, work, nil); err != nil {
		t.Fatalf("privileged, new: %v", err)
	}
	os.WriteFile(filepath.Join(upper, "file"), nil, 0o644)
	err := CheckLayer(root, upper, work, m)
	if err == nil || !strings.Contains(err.Error(), "privileged container") {
		t.Fatalf("a used privileged layer started unprivileged: %v", err)
	}
	os.Remove(filepath.Join(upper, "file"))
	if os.Geteuid() != 0 {
		t.Skip("chown of a new layer needs root")
	}
	if err := CheckLayer(root, upper, work, m); err != nil {
		t.Fatalf("new layer: %v", err)
	}
	if err := CheckLayer(root, upper, work, m); err != nil {
		t.Fatalf("same mapping again: %v", err)
	}
	if err := CheckLayer(root, upper, work, other); err == nil || !strings.Contains(err.Error(), "u:0:100000:65536") {
		t.Fatalf("another mapping: %v", err)
	}
	if err := CheckLayer(root, upper, work, nil); err == nil || !strings.Contains(err.Error(), "unprivileged container") {
		t.Fatalf("privileged start of an unprivileged layer: %v", err)
	}
}

func TestPinName(t *testing.T) {
	m, err := ParseLXC([]string{"u 0 100000 65536", "g 0 100000 65536", "u 65536 300000 10"})
	if err != nil {
		t.Fatal(err)
	}
	if got := pinName(m); got != "u0-100000-65536_u65536-300000-10.g0-100000-65536" {
		t.Fatalf("pinName = %q", got)
	}
}

func TestInverseAndRecord(t *testing.T) {
	m, _ := ParseLXC([]string{"u 0 100000 65536", "g 0 200000 1000", "g 1000 300000 64536"})
	inv := m.Inverse()
	if got := inv.String(); got != "u:100000:0:65536 g:200000:0:1000 g:300000:1000:64536" {
		t.Fatalf("inverse %q", got)
	}
	back, err := ParseRecord(m.String())
	if err != nil || back.String() != m.String() {
		t.Fatalf("record round trip: %v %v", back, err)
	}
	for _, bad := range []string{"", "u:0:100000", "x:0:1:2 g:0:1:2", "u:0:a:1 g:0:1:1", "u:5:100000:10 g:0:1:1"} {
		if _, err := ParseRecord(bad); err == nil {
			t.Errorf("ParseRecord(%q) accepted", bad)
		}
	}
	dir := t.TempDir()
	if r, err := ReadRecord(dir); r != nil || err != nil {
		t.Fatalf("no record: %v %v", r, err)
	}
	os.WriteFile(filepath.Join(dir, RecordName), []byte(m.String()+"\n"), 0o600)
	if r, err := ReadRecord(dir); err != nil || r.String() != m.String() {
		t.Fatalf("record: %v %v", r, err)
	}
}

// UserNS gives a user namespace with exactly the mapping asked for, and
// leaves no process behind.
func TestUserNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mapping host uid 0 into a user namespace")
	}
	m, _ := ParseLXC([]string{"u 0 100000 65536", "g 0 100000 65536"})
	ns, err := UserNS(m.Inverse())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(ns.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	own, _ := os.Stat("/proc/self/ns/user")
	if own.Sys().(*syscall.Stat_t).Ino == st.Ino {
		t.Fatal("got this process's own user namespace")
	}
	// No child left: every child of this process is reaped.
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		if b, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/children"); strings.TrimSpace(string(b)) != "" {
			t.Fatalf("children left: %s", b)
		}
	}
}
