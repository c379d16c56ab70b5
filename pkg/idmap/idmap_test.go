package idmap

import (
	"os"
	"path/filepath"
	"strings"
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
