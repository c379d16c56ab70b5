package idmap

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestShiftID(t *testing.T) {
	from := []Range{{0, 100000, 65536}}
	to := []Range{{0, 300000, 1000}, {1000, 500000, 64536}}
	for id, want := range map[uint32]uint32{100000: 300000, 100999: 300999, 101000: 500000, 165535: 564535} {
		if got, ok := ShiftID(from, to, id); !ok || got != want {
			t.Errorf("%d: %d %v, want %d", id, got, ok, want)
		}
	}
	for _, id := range []uint32{0, 99999, 165536} {
		if got, ok := ShiftID(from, to, id); ok {
			t.Errorf("%d shifted to %d", id, got)
		}
	}
}

func acl(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

const noID = 0xFFFFFFFF

func capV3(rootid uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, capRevision3|1)            // effective
	b = binary.LittleEndian.AppendUint32(b, 1<<unix.CAP_NET_BIND_SERVICE) // permitted
	b = append(b, make([]byte, 12)...)
	return binary.LittleEndian.AppendUint32(b, rootid)
}

func TestShiftACLAndCaps(t *testing.T) {
	from := &Mapping{UID: []Range{{0, 100000, 65536}}, GID: []Range{{0, 200000, 65536}}}
	to := &Mapping{UID: []Range{{0, 300000, 65536}}, GID: []Range{{0, 400000, 65536}}}
	in := acl([3]uint32{1, 6, noID}, [3]uint32{aclUser, 4, 100005}, [3]uint32{aclUser, 4, 1000}, [3]uint32{4, 4, noID}, [3]uint32{aclGroup, 4, 200007}, [3]uint32{0x10, 4, noID}, [3]uint32{0x20, 4, noID})
	out, changed := shiftACL(in, from, to)
	want := acl([3]uint32{1, 6, noID}, [3]uint32{aclUser, 4, 300005}, [3]uint32{aclUser, 4, 1000}, [3]uint32{4, 4, noID}, [3]uint32{aclGroup, 4, 400007}, [3]uint32{0x10, 4, noID}, [3]uint32{0x20, 4, noID})
	if !changed || string(out) != string(want) {
		t.Fatalf("acl: %v %x", changed, out)
	}
	if _, changed := shiftACL(acl([3]uint32{1, 6, noID}), from, to); changed {
		t.Fatal("an ACL without named entries changed")
	}
	if got := shiftCaps(capV3(100000), from, to); binary.LittleEndian.Uint32(got[20:]) != 300000 {
		t.Fatalf("v3 rootid %d", binary.LittleEndian.Uint32(got[20:]))
	}
	v2 := capV3(0)[:20]
	binary.LittleEndian.PutUint32(v2, 0x02000001)
	if got := shiftCaps(v2, from, to); string(got) != string(v2) {
		t.Fatal("a v2 capability changed")
	}
}

type owner struct{ uid, gid uint32 }

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// A layer as a container leaves it, shifted from one block to another:
// owners move, modes (setuid, setgid) and capabilities survive chown,
// ACL entries move, links are not followed, host root's files stay.
func TestShiftTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to other users needs root")
	}
	from := &Mapping{UID: []Range{{0, 100000, 65536}}, GID: []Range{{0, 100000, 65536}}}
	to := &Mapping{UID: []Range{{0, 300000, 65536}}, GID: []Range{{0, 300000, 65536}}}
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	os.WriteFile(outside, []byte("x"), 0o644)
	os.Chown(outside, 100000, 100000)
	root := filepath.Join(base, "upper")
	os.Mkdir(root, 0o755)
	p := func(n string) string { return filepath.Join(root, n) }
	os.Mkdir(p("dir"), 0o755)
	unix.Chmod(p("dir"), 0o2775)
	os.WriteFile(p("dir/suid"), []byte("#!/bin/sh\n"), 0o755)
	unix.Chmod(p("dir/suid"), 0o6755)
	os.Link(p("dir/suid"), p("hardlink"))
	os.WriteFile(p("capped"), nil, 0o755)
	os.WriteFile(p("hostroot"), nil, 0o644)
	os.Symlink(outside, p("link"))
	os.Symlink("dir", p("dirlink"))
	if err := unix.Mknod(p("whiteout"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	owners := map[string]owner{"": {100000, 100000}, "dir": {100001, 100002}, "dir/suid": {100000, 100003}, "capped": {100000, 100000}, "link": {100000, 100000}, "dirlink": {100000, 100000}}
	for n, o := range owners {
		if err := os.Lchown(p(n), int(o.uid), int(o.gid)); err != nil {
			t.Fatal(err)
		}
	}
	unix.Chmod(p("dir/suid"), 0o6755) // chown just cleared it
	withACL := unix.Setxattr(p("dir"), aclAccessXattr, acl([3]uint32{1, 7, noID}, [3]uint32{aclUser, 5, 100005}, [3]uint32{4, 5, noID}, [3]uint32{0x10, 7, noID}, [3]uint32{0x20, 5, noID}), 0) == nil
	if withACL {
		if err := unix.Setxattr(p("dir"), aclDefaultXattr, acl([3]uint32{1, 7, noID}, [3]uint32{4, 5, noID}, [3]uint32{aclGroup, 5, 100009}, [3]uint32{0x10, 7, noID}, [3]uint32{0x20, 5, noID}), 0); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Log("no ACLs on this filesystem: their shift is not checked here")
	}
	unix.Chmod(p("dir"), 0o2775) // after the ACL, which may clear setgid
	if err := unix.Setxattr(p("capped"), capXattr, capV3(100000), 0); err != nil {
		t.Fatalf("setting a namespaced capability: %v", err)
	}
	st0 := lstat(t, p("dir/suid"))
	if st0.Mode&0o7777 != 0o6755 || lstat(t, p("dir")).Mode&0o7777 != 0o2775 {
		t.Fatalf("test setup: modes %o and %o", st0.Mode&0o7777, lstat(t, p("dir")).Mode&0o7777)
	}

	stats, err := ShiftTree(root, from, to)
	if err != nil {
		t.Fatal(err)
	}
	for n, o := range owners {
		st := lstat(t, p(n))
		if st.Uid != o.uid+200000 || st.Gid != o.gid+200000 {
			t.Errorf("%s: %d:%d, want %d:%d", n, st.Uid, st.Gid, o.uid+200000, o.gid+200000)
		}
	}
	for _, n := range []string{"hostroot", "whiteout"} {
		if st := lstat(t, p(n)); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s (host root's) became %d:%d", n, st.Uid, st.Gid)
		}
	}
	if st := lstat(t, outside); st.Uid != 100000 {
		t.Errorf("the symlink was followed: its target is %d now", st.Uid)
	}
	if st := lstat(t, p("dir/suid")); st.Mode != st0.Mode || st.Ino != lstat(t, p("hardlink")).Ino {
		t.Errorf("setuid file mode %o, was %o", st.Mode, st0.Mode)
	}
	if st := lstat(t, p("dir")); st.Mode&0o7777 != 0o2775 {
		t.Errorf("setgid directory mode %o", st.Mode&0o7777)
	}
	caps, err := getXattr(p("capped"), capXattr)
	if err != nil || len(caps) != capV3Size || binary.LittleEndian.Uint32(caps[20:]) != 300000 {
		t.Errorf("capability after the shift: %x %v (want v3 for root 300000)", caps, err)
	}
	if withACL {
		a, _ := getXattr(p("dir"), aclAccessXattr)
		if got := binary.LittleEndian.Uint32(a[4+8+4:]); got != 300005 {
			t.Errorf("ACL user entry %d", got)
		}
		d, _ := getXattr(p("dir"), aclDefaultXattr)
		if got := binary.LittleEndian.Uint32(d[4+16+4:]); got != 300009 {
			t.Errorf("default ACL group entry %d", got)
		}
	}
	if stats.Caps != 1 || stats.Owners != len(owners) {
		t.Errorf("stats %+v", stats)
	}
	// Again: nothing left to shift, nothing changes.
	again, err := ShiftTree(root, from, to)
	if err != nil || again.Owners != 0 || again.ACLs != 0 {
		t.Fatalf("second shift: %+v %v", again, err)
	}
}
