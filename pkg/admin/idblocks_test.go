package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
)

func writeCtr(t *testing.T, lxcpath, name, config string) string {
	t.Helper()
	dir := filepath.Join(lxcpath, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "config")
	if err := os.WriteFile(p, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testRoot() idmap.RootRange {
	return idmap.RootRange{UID: idmap.Claim{Start: 1_000_000_000, Count: 1_000_000_000}, GID: idmap.Claim{Start: 1_000_000_000, Count: 1_000_000_000}}
}

// The first block after the shared one that no config, snapshot or
// reservation under the lxcpath touches; a broken line still takes its IDs.
func TestFreeBlock(t *testing.T) {
	lxcpath := t.TempDir()
	root := testRoot()
	k, m, err := freeBlock(root, nil, []string{lxcpath}, "")
	if err != nil || k != 1 || m.String() != "u:0:1000065536:65536 g:0:1000065536:65536" {
		t.Fatalf("empty lxcpath: %d %v %v", k, m, err)
	}
	writeCtr(t, lxcpath, "shared", "lxc.idmap = u 0 1000000000 65536\nlxc.idmap = g 0 1000000000 65536\n")
	one := writeCtr(t, lxcpath, "one", "lxc.idmap = u 0 1000065536 65536\nlxc.idmap = g 0 1000065536 65536\n")
	// Block 2 only by its gid line, and with a line LXC would refuse.
	writeCtr(t, lxcpath, "gidonly", "lxc.idmap = g 0 1000131072 10\nlxc.idmap = x y z\n")
	os.MkdirAll(filepath.Join(lxcpath, "one", "snaps", "snap0"), 0o755)
	os.WriteFile(filepath.Join(lxcpath, "one", "snaps", "snap0", "config"), []byte("lxc.idmap = b 0 1000196608 65536\n"), 0o644)
	os.MkdirAll(filepath.Join(lxcpath, "copying"), 0o755)
	os.WriteFile(filepath.Join(lxcpath, "copying", reservationName), []byte("lxc.idmap = u 0 1000262144 65536\nlxc.idmap = g 0 1000262144 65536\n"), 0o600)
	os.WriteFile(filepath.Join(lxcpath, "notadir"), nil, 0o644)
	k, m, err = freeBlock(root, nil, []string{lxcpath}, "")
	if err != nil || k != 5 || m.String() != "u:0:1000327680:65536 g:0:1000327680:65536" {
		t.Fatalf("taken 1-4: %d %v %v", k, m, err)
	}
	// A large mapping covers many blocks.
	writeCtr(t, lxcpath, "wide", "lxc.idmap = u 0 1000300000 1000000\nlxc.idmap = g 0 1000300000 1000000\n")
	if k, _, _ = freeBlock(root, nil, []string{lxcpath}, ""); k != 20 { // 1001300000 is in block 19
		t.Fatalf("after a wide mapping: block %d", k)
	}
	// The config being rewritten (a clone's, holding SRC's lines) is not
	// counted.
	if k, _, _ = freeBlock(root, nil, []string{lxcpath}, one); k != 1 {
		t.Fatalf("block 1 with its owner excluded: %d", k)
	}
	small := idmap.RootRange{UID: idmap.Claim{Start: 100000, Count: 2 * idmap.MinRange}, GID: idmap.Claim{Start: 100000, Count: 2 * idmap.MinRange}}
	lp := t.TempDir()
	writeCtr(t, lp, "a", "lxc.idmap = u 0 165536 65536\nlxc.idmap = g 0 165536 65536\n")
	if _, _, err := freeBlock(small, nil, []string{lp}, ""); err == nil || !strings.Contains(err.Error(), "no free block") {
		t.Fatalf("full range: %v", err)
	}
}

// A copy of an isolated container gets its new mapping in place of the
// old lines, and comments naming the old mapping name the new one.
func TestRewriteIDMap(t *testing.T) {
	in := `# Unprivileged: the container's root is host uid/gid u:0:1000065536:65536 g:0:1000065536:65536;
lxc.uts.name = web1
lxc.idmap = u 0 1000065536 65536
lxc.include = /x
lxc.idmap = g 0 1000065536 65536
`
	r := rewrite{SrcDir: "/l/web1", DstDir: "/l/web2", IDMap: []string{"u 0 1000131072 65536", "g 0 1000131072 65536"}, OldIDMap: "u:0:1000065536:65536 g:0:1000065536:65536"}
	want := `# Unprivileged: the container's root is host uid/gid u:0:1000131072:65536 g:0:1000131072:65536;
lxc.uts.name = web1
lxc.idmap = u 0 1000131072 65536
lxc.idmap = g 0 1000131072 65536
lxc.include = /x
`
	if got := r.apply(in); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// No IDMap: the lines stay.
	if got := (rewrite{SrcDir: "/l/web1", DstDir: "/l/web2"}).apply(in); got != in {
		t.Errorf("a copy of a shared-mapping container changed its idmap:\n%s", got)
	}
}

// Blocks holding another user's IDs are not given out.
func TestFreeBlockSkipsOthersIDs(t *testing.T) {
	dir := t.TempDir()
	f := idmap.HostFiles{SubUID: filepath.Join(dir, "subuid"), SubGID: filepath.Join(dir, "subgid"), Passwd: filepath.Join(dir, "passwd"), Group: filepath.Join(dir, "group")}
	os.WriteFile(f.SubUID, []byte("root:1000000000:1000000000\nbob:1000070000:10\n"), 0o644)
	os.WriteFile(f.Group, []byte("svc:x:1000140000:\n"), 0o644)
	h, err := idmap.ReadHost(f)
	if err != nil {
		t.Fatal(err)
	}
	if k, _, err := freeBlock(testRoot(), h, []string{t.TempDir()}, ""); err != nil || k != 3 {
		t.Fatalf("block %d %v, want 3 (1 has bob's uids, 2 the group svc)", k, err)
	}
	one := idmap.RootRange{UID: idmap.Claim{Start: 100000, Count: 65536}, GID: idmap.Claim{Start: 100000, Count: 65536}}
	if _, _, err := freeBlock(one, nil, []string{t.TempDir()}, ""); err == nil || !strings.Contains(err.Error(), "none is left for an isolated container") {
		t.Fatalf("a range of one block: %v", err)
	}
}

func TestCopyLXCPaths(t *testing.T) {
	for _, c := range []struct{ src, dst, want string }{
		{"/l/a/config", "/l/b/config", "/l"},
		{"/l/a/config", "/m/b/config", "/l /m"},
		{"/m/a/config", "/l/b/config", "/l /m"},
		{"/l/a/config", "/l/a/snaps/snap0/config", "/l"}, // lxc-snapshot
		{"/l/a/snaps/snap0/config", "/l/a/config", "/l"}, // lxc-snapshot -r
	} {
		if got := strings.Join(copyLXCPaths(c.src, c.dst), " "); got != c.want {
			t.Errorf("%s -> %s: %q, want %q", c.src, c.dst, got, c.want)
		}
	}
}
