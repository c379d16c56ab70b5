package test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/layer"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
)

// propsMtime is the modification time every file of props/ gets.
var propsMtime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// capNetRawEP is security.capability for cap_net_raw=ep (struct
// vfs_cap_data, revision 2), what `setcap cap_net_raw+ep` writes.
func capNetRawEP() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x1) // VFS_CAP_REVISION_2 | effective
	binary.LittleEndian.PutUint32(b[4:], 1<<13)          // permitted: CAP_NET_RAW
	return b
}

// richTree makes a bootable root at dir: the busybox template plus props/
// with every property a root filesystem needs kept.
func richTree(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", tplDir+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	p := filepath.Join(dir, "props")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(p, 0o755))
	must(os.WriteFile(filepath.Join(p, "owned"), []byte("owned\n"), 0o640))
	must(os.Lchown(filepath.Join(p, "owned"), 1234, 5678))
	must(os.WriteFile(filepath.Join(p, "suid"), []byte("suid\n"), 0o755))
	must(os.Chmod(filepath.Join(p, "suid"), 0o755|os.ModeSetuid))
	must(os.WriteFile(filepath.Join(p, "cap"), []byte("cap\n"), 0o755))
	must(unix.Setxattr(filepath.Join(p, "cap"), "security.capability", capNetRawEP(), 0))
	must(os.WriteFile(filepath.Join(p, "xattr"), []byte("x\n"), 0o644))
	must(unix.Setxattr(filepath.Join(p, "xattr"), "user.tpl", []byte("user value"), 0))
	must(unix.Setxattr(filepath.Join(p, "xattr"), "trusted.tpl", []byte("trusted value"), 0))
	must(unix.Mknod(filepath.Join(p, "cdev"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(p, "bdev"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	must(unix.Mkfifo(filepath.Join(p, "fifo"), 0o644))
	must(os.WriteFile(filepath.Join(p, "hl1"), []byte("hardlink\n"), 0o644))
	must(os.Link(filepath.Join(p, "hl1"), filepath.Join(p, "hl2")))
	must(os.Symlink("suid", filepath.Join(p, "sym")))
	f, err := os.Create(filepath.Join(p, "sparse"))
	must(err)
	_, err = f.WriteAt([]byte("end"), 64<<20)
	must(err)
	f.Close()
	// A directory whose contents a container's layer will replace (opaque).
	must(os.Mkdir(filepath.Join(dir, "opq"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "opq", "old"), []byte("old\n"), 0o644))
	ts := []unix.Timespec{unix.NsecToTimespec(propsMtime.UnixNano()), unix.NsecToTimespec(propsMtime.UnixNano())}
	ents, _ := os.ReadDir(p)
	for _, e := range ents {
		must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(p, e.Name()), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	must(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0))
}

// checkProps checks every property of props/ under root.
func checkProps(t *testing.T, root, what string) {
	t.Helper()
	p := filepath.Join(root, "props")
	st := func(name string) *unix.Stat_t {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(p, name), &s); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return &s
	}
	errf := func(format string, a ...any) {
		t.Helper()
		t.Errorf(what+": "+format, a...)
	}
	if s := st("owned"); s.Uid != 1234 || s.Gid != 5678 || s.Mode&0o7777 != 0o640 {
		errf("owned: uid %d gid %d mode %o, want 1234 5678 640", s.Uid, s.Gid, s.Mode&0o7777)
	}
	if s := st("suid"); s.Mode&0o7777 != 0o4755 {
		errf("suid: mode %o, want 4755", s.Mode&0o7777)
	}
	xattr := func(name, attr string) []byte {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(p, name), attr, buf)
		if err != nil {
			errf("%s: xattr %s: %v", name, attr, err)
			return nil
		}
		return buf[:n]
	}
	if got := xattr("cap", "security.capability"); got != nil && !bytes.Equal(got, capNetRawEP()) {
		errf("cap: security.capability %x, want %x", got, capNetRawEP())
	}
	if got := xattr("xattr", "user.tpl"); got != nil && string(got) != "user value" {
		errf("user.tpl = %q", got)
	}
	if got := xattr("xattr", "trusted.tpl"); got != nil && string(got) != "trusted value" {
		errf("trusted.tpl = %q", got)
	}
	// overlayfs's own xattrs must not leak into a template.
	for _, n := range []string{"", "props", "opq", "etc"} {
		buf := make([]byte, 4096)
		sz, _ := unix.Llistxattr(filepath.Join(root, n), buf)
		if strings.Contains(string(buf[:max(sz, 0)]), "overlay.") {
			errf("/%s carries overlayfs xattrs: %q", n, buf[:sz])
		}
	}
	if s := st("cdev"); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != unix.Mkdev(1, 3) {
		errf("cdev: mode %o rdev %d:%d", s.Mode, unix.Major(s.Rdev), unix.Minor(s.Rdev))
	}
	if s := st("bdev"); s.Mode&unix.S_IFMT != unix.S_IFBLK || s.Rdev != unix.Mkdev(7, 200) {
		errf("bdev: mode %o rdev %d:%d", s.Mode, unix.Major(s.Rdev), unix.Minor(s.Rdev))
	}
	if s := st("fifo"); s.Mode&unix.S_IFMT != unix.S_IFIFO {
		errf("fifo: mode %o", s.Mode)
	}
	if a, b := st("hl1"), st("hl2"); a.Ino != b.Ino || a.Nlink != 2 {
		errf("hl1/hl2: inodes %d %d, links %d: not one hardlinked file", a.Ino, b.Ino, a.Nlink)
	}
	if l, err := os.Readlink(filepath.Join(p, "sym")); err != nil || l != "suid" {
		errf("sym -> %q (%v)", l, err)
	}
	if s := st("sparse"); s.Size != 64<<20+3 {
		errf("sparse: size %d", s.Size)
	} else if b, _ := os.ReadFile(filepath.Join(p, "sparse")); !bytes.Equal(b[64<<20:], []byte("end")) || bytes.Count(b[:64<<20], []byte{0}) != 64<<20 {
		errf("sparse: contents differ")
	}
	for _, n := range []string{"owned", "suid", "cap", "cdev", "fifo", "hl1", "sym", "sparse", ""} {
		if s := st(n); s.Mtim.Sec != propsMtime.Unix() {
			errf("%s: mtime %s, want %s", n, time.Unix(s.Mtim.Sec, 0).UTC(), propsMtime)
		}
	}
}

// mountTemplate mounts a template image read-only and returns where to
// read it: a detached mount (fsmount, never attached in any mount
// namespace), read through its fd as /proc/self/fd/N. Attached on the host,
// it would be copied into every mount namespace made meanwhile (a
// container's start, a hook's private namespace, another test run), and a
// copy there keeps its loop device after the umount. A dir template is its
// own root. closeTemplates (or the end of the test) lets it go, and its
// autoclear loop device with it.
func mountTemplate(t *testing.T, file string) string {
	t.Helper()
	if fi, err := os.Stat(file); err == nil && fi.IsDir() {
		return file
	}
	l, err := layer.ResolveLower(file)
	if err != nil {
		t.Fatalf("template %s: %v", file, err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := loop.Attach(f, loop.Options{ReadOnly: true, Autoclear: true})
	f.Close()
	if err != nil {
		t.Fatalf("loop device for %s: %v", file, err)
	}
	defer dev.Close() // the mount holds the device from here
	fsfd, err := unix.Fsopen(l.FSType, unix.FSOPEN_CLOEXEC)
	if err != nil {
		t.Fatalf("fsopen %s: %v", l.FSType, err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", dev.Path); err != nil {
		t.Fatalf("%s source %s: %v", l.FSType, dev.Path, err)
	}
	if err := unix.FsconfigSetFlag(fsfd, "ro"); err != nil {
		t.Fatalf("%s ro: %v", l.FSType, err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		t.Fatalf("%s on %s: %v", l.FSType, dev.Path, err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY)
	if err != nil {
		t.Fatalf("fsmount %s: %v", file, err)
	}
	templateMounts.Lock()
	templateMounts.fds = append(templateMounts.fds, mfd)
	templateMounts.Unlock()
	t.Cleanup(closeTemplates)
	return fmt.Sprintf("/proc/self/fd/%d", mfd)
}

var templateMounts struct {
	sync.Mutex
	fds []int
}

// closeTemplates lets every template mountTemplate mounted go.
func closeTemplates() {
	templateMounts.Lock()
	defer templateMounts.Unlock()
	for _, fd := range templateMounts.fds {
		unix.Close(fd)
	}
	templateMounts.fds = nil
}

// holesKept checks that the 64 MiB of zeros are not stored: an image is
// far smaller, a directory's file has few blocks.
func holesKept(t *testing.T, file string) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.IsDir() {
		var s unix.Stat_t
		unix.Stat(filepath.Join(file, "props", "sparse"), &s)
		if s.Blocks*512 > 1<<20 {
			t.Errorf("%s: props/sparse occupies %d bytes: its hole was filled", file, s.Blocks*512)
		}
		return
	}
	if fi.Size() > 16<<20 {
		t.Errorf("%s is %d bytes: the sparse file's zeros were stored", file, fi.Size())
	}
}

// shiftTree copies src to dst with every owner moved up by base, as an
// unprivileged LXC container's rootfs is stored: modes (setuid, which the
// chown clears) set again, and the file capability rewritten as the kernel
// stores one set inside the container (revision 3, root ID base).
func shiftTree(t *testing.T, src, dst string, base uint32) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	err := filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		caps := make([]byte, 64)
		n, capErr := unix.Lgetxattr(p, "security.capability", caps)
		if err := os.Lchown(p, int(st.Uid+base), int(st.Gid+base)); err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
				return err
			}
		}
		if capErr == nil && n == 20 {
			v3 := make([]byte, 24)
			copy(v3, caps[:20])
			binary.LittleEndian.PutUint32(v3[0:], binary.LittleEndian.Uint32(caps[0:])&^0xff000000|0x03000000)
			binary.LittleEndian.PutUint32(v3[20:], base)
			if err := unix.Lsetxattr(p, "security.capability", v3, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("shifting %s: %v", dst, err)
	}
	var s unix.Stat_t
	if unix.Lstat(filepath.Join(dst, "props", "owned"), &s); s.Uid != 1234+base {
		t.Fatalf("shifted tree: props/owned is %d", s.Uid)
	}
	if v := capRootID(t, filepath.Join(dst, "props", "cap")); v != int64(base) {
		t.Fatalf("shifted tree: props/cap has root ID %d, want a revision 3 capability with %d", v, base)
	}
}

// capRootID is the root ID of a file's revision 3 capability as host root
// reads it, -1 for a revision 2 one (no root ID: the host's root).
func capRootID(t *testing.T, p string) int64 {
	t.Helper()
	b := make([]byte, 64)
	n, err := unix.Lgetxattr(p, "security.capability", b)
	if err != nil {
		t.Fatalf("%s: security.capability: %v", p, err)
	}
	if n == 24 && b[3] == 3 {
		return int64(binary.LittleEndian.Uint32(b[20:]))
	}
	return -1
}

var templateFormats = []string{"squashfs-lz4", "squashfs-zstd", "erofs", "erofs-lz4", "dir"}

// A template from each kind of SOURCE, in each format, mounts and keeps
// every property; nothing stays mounted or attached.
func TestTemplateFromSources(t *testing.T) {
	requireEnv(t)
	needTools(t, "apt-get install erofs-utils zstd xz-utils", "mkfs.erofs", "zstd", "xz")
	dir := testDir(t)
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	richTree(t, src)
	checkProps(t, src, "the source itself")
	// One machine's id, which no template may pass on to its containers.
	const machineID = "0123456789abcdef0123456789abcdef\n"
	if err := os.WriteFile(filepath.Join(src, "etc", "machine-id"), []byte(machineID), 0o444); err != nil {
		t.Fatal(err)
	}

	sources := map[string]string{"dir": src}
	for ext, flag := range map[string]string{".tar": "", ".tar.gz": "--gzip", ".tar.xz": "--xz", ".tar.zst": "--zstd"} {
		tb := filepath.Join(dir, "rootfs"+ext)
		args := []string{"--create", "--file", tb, "--directory", src, "--numeric-owner", "--xattrs", "--xattrs-include=*", "--sparse"}
		if flag != "" {
			args = append(args, flag)
		}
		if out, err := exec.Command("tar", append(args, ".")...).CombinedOutput(); err != nil {
			t.Fatalf("tar: %v %s", err, out)
		}
		sources[ext] = tb
	}
	// An LXC container with a dir rootfs, as lxc-create -t busybox makes it.
	lxcpath := filepath.Join(dir, "lxc")
	os.MkdirAll(filepath.Join(lxcpath, "plain"), 0o755)
	os.WriteFile(filepath.Join(lxcpath, "plain", "config"), []byte("lxc.uts.name = plain\nlxc.rootfs.path = dir:"+src+"\n"), 0o644)
	sources["lxc dir container"] = "plain"
	// An unprivileged one, its rootfs stored with the host IDs of its map
	// as lxc-create makes it (root's files 100000, the 1234 file 101234, the
	// capability a v3 one with root ID 100000): shifted back, every property
	// comes out as in src.
	shiftedRoot := filepath.Join(dir, "unpriv-rootfs")
	shiftTree(t, src, shiftedRoot, 100000)
	os.MkdirAll(filepath.Join(lxcpath, "unpriv"), 0o755)
	os.WriteFile(filepath.Join(lxcpath, "unpriv", "config"), []byte("lxc.uts.name = unpriv\nlxc.rootfs.path = dir:"+shiftedRoot+"\nlxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n"), 0o644)
	sources["unprivileged lxc dir container"] = "unpriv"
	// An existing template image.
	img := filepath.Join(dir, "existing.sqfs")
	if out, err := admin(t, "lxc-hook-loopimg", "template", img, "--from", src, "--format", "squashfs-gzip"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	sources["squashfs image"] = img
	eimg := filepath.Join(dir, "existing.erofs")
	if out, err := admin(t, "lxc-hook-overlay", "template", eimg, "--from", src, "--format", "erofs-lz4hc"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	sources["erofs image"] = eimg

	// A squashfs without any xattr answers EOPNOTSUPP to llistxattr on its
	// symlinks, which mkfs.erofs 1.5 gives up on: erofs from it still works.
	noxattr := filepath.Join(dir, "out", "noxattr.erofs")
	os.MkdirAll(filepath.Dir(noxattr), 0o755)
	if out, err := admin(t, "lxc-hook-loopimg", "template", noxattr, "--from", tplSquash, "--format", "erofs"); err != nil {
		t.Errorf("erofs from a squashfs without xattrs: %v %s", err, out)
	} else if l, err := os.Readlink(filepath.Join(mountTemplate(t, noxattr), "bin", "sh")); err != nil || l != "busybox" {
		t.Errorf("erofs from a squashfs without xattrs: bin/sh -> %q %v", l, err)
	}

	for kind, from := range sources {
		for _, format := range templateFormats {
			out := filepath.Join(dir, "out", strings.NewReplacer(" ", "-", ".", "").Replace(kind)+"."+format)
			os.MkdirAll(filepath.Dir(out), 0o755)
			res, err := admin(t, "lxc-hook-loopimg", "template", out, "--from", from, "--format", format, "-P", lxcpath)
			if err != nil {
				t.Errorf("from %s to %s: %v\n%s", kind, format, err, res)
				continue
			}
			root := mountTemplate(t, out)
			checkProps(t, root, kind+" -> "+format)
			if fi, err := os.Lstat(filepath.Join(root, "etc", "machine-id")); err != nil || fi.Size() != 0 || fi.Mode() != 0o444 {
				t.Errorf("from %s to %s: /etc/machine-id should be empty, mode 0444: %v %v", kind, format, fi, err)
			}
			holesKept(t, out)
			if leftovers, _ := filepath.Glob(filepath.Join(dir, "out", ".*")); len(leftovers) > 0 {
				t.Errorf("from %s to %s: left behind %v", kind, format, leftovers)
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(src, "etc", "machine-id")); string(b) != machineID {
		t.Errorf("the source's /etc/machine-id was changed: %q", b)
	}
	// The template commands' own loop devices (on the source images) were
	// gone when they returned.
	if l := loopsOn(dir, img, eimg); len(l) > 0 {
		t.Errorf("the source images are still attached after template: %v", l)
	}
	// Unmount what the test mounted (mount -o loop), then nothing may be
	// attached once the kernel has released those devices.
	for _, m := range mountsUnder(dir) {
		exec.Command("umount", m).Run()
	}
	closeTemplates()
	waitNoLoops(t, dir, "after building and checking every template")
	if m := mountsUnder(dir); len(m) > 0 {
		t.Errorf("still mounted: %v", m)
	}
}

// waitNoLoops is assertNoLoops after the test's own umount of util-linux
// loop mounts, whose autoclear the kernel may complete a moment later:
// bounded, 5 s.
func waitNoLoops(t *testing.T, dir, when string) {
	t.Helper()
	for i := 0; i < 500 && len(loopsUnder(dir)) > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	assertNoLoops(t, dir, when)
}

// loopsOn lists the loop devices under dir backed by one of files.
func loopsOn(dir string, files ...string) []string {
	var out []string
	for _, l := range loopsUnder(dir) {
		for _, f := range files {
			if strings.HasSuffix(l, " ("+f+")") {
				out = append(out, l)
			}
		}
	}
	return out
}

// mountsUnder lists the host's mounts below dir.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// A customised hook-managed container becomes a template: its layer's
// files are in, the files it deleted are not, an opaque directory hides
// the template's contents; a container started from it sees the same. A
// running container is refused; an existing FILE is left byte-identical.
func TestTemplateFromContainer(t *testing.T) {
	requireEnv(t)
	for _, hook := range []string{"lxc-hook-loopimg", "lxc-hook-overlay"} {
		t.Run(hook, func(t *testing.T) {
			dir := testDir(t)
			src := filepath.Join(dir, "src")
			os.Mkdir(src, 0o755)
			richTree(t, src)
			base := filepath.Join(dir, "base.sqfs")
			if out, err := admin(t, hook, "template", base, "--from", src); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			args := []string{"--lower", base}
			if hook == "lxc-hook-loopimg" {
				args = append(args, "--image", filepath.Join(dir, "layer.img"), "--size", "32M")
			} else {
				args = append(args, "--upper", filepath.Join(dir, "layer"))
			}
			c := newCtr(t, ctrOpts{hook: hook, args: args})
			c.mustStart()
			c.mustSh("rm /etc/from-template && echo mine > /etc/layer-file && rm -r /opq && mkdir /opq && echo new > /opq/new && chmod 600 /props/xattr")

			flat := filepath.Join(dir, "flat.sqfs")
			out, err := admin(t, hook, "template", flat, "--from", c.name, "-P", c.lxcpath)
			if err == nil || !strings.Contains(out, "is RUNNING") {
				t.Errorf("a running container as SOURCE: err %v, output %q; want a refusal naming RUNNING", err, out)
			}
			if exists(flat) {
				t.Fatalf("%s written from a running container", flat)
			}
			c.stop(false)
			assertNoLoops(t, dir, "after lxc-stop")

			for _, format := range []string{"squashfs-lz4", "erofs", "dir"} {
				flat := filepath.Join(dir, "flat."+format)
				if out, err := admin(t, hook, "template", flat, "--from", c.name, "-P", c.lxcpath, "--format", format); err != nil {
					t.Fatalf("%s: %v %s", format, err, out)
				}
				if l := loopsOn(dir, base, filepath.Join(dir, "layer.img")); len(l) > 0 {
					t.Fatalf("after template --from %s: still attached: %v", c.name, l)
				}
				if m := mountsUnder(dir); len(m) > 0 {
					t.Fatalf("still mounted after template: %v", m)
				}
				root := mountTemplate(t, flat)
				checkProps(t, root, "flattened "+format)
				if b, err := os.ReadFile(filepath.Join(root, "etc", "layer-file")); err != nil || string(b) != "mine\n" {
					t.Errorf("%s: the layer's /etc/layer-file: %q %v", format, b, err)
				}
				if exists(filepath.Join(root, "etc", "from-template")) {
					t.Errorf("%s: the deleted /etc/from-template is back", format)
				}
				ents, _ := os.ReadDir(filepath.Join(root, "opq"))
				if len(ents) != 1 || ents[0].Name() != "new" {
					t.Errorf("%s: /opq holds %v, want only new (opaque directory)", format, ents)
				}
				// A copied-up file: its new mode, and its xattrs (checkProps).
				if fi, err := os.Stat(filepath.Join(root, "props", "xattr")); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: the layer's chmod of props/xattr was lost: %v", format, fi.Mode())
				}
				for _, m := range mountsUnder(dir) {
					exec.Command("umount", m).Run()
				}
				closeTemplates()
			}

			// A container from the flattened template sees the same.
			c2 := newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", filepath.Join(dir, "flat.squashfs-lz4"), "--image", filepath.Join(dir, "layer2.img"), "--size", "32M"}})
			c2.mustStart()
			got := c2.mustSh("cat /etc/layer-file; ls /opq; test -e /etc/from-template && echo deleted-file-is-back; true")
			if got != "mine\nnew\n" {
				t.Errorf("inside a container from the flattened template: %q", got)
			}
			c2.stop(false)

			// An existing FILE is never overwritten.
			keep := filepath.Join(dir, "flat.squashfs-lz4")
			before := fileSHA(t, keep)
			out, err = admin(t, hook, "template", keep, "--from", c.name, "-P", c.lxcpath)
			if err == nil || !strings.Contains(out, "already exists: nothing was changed") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Errorf("template onto an existing file: err %v, output %q; want one line saying it exists", err, out)
			}
			if fileSHA(t, keep) != before {
				t.Errorf("%s was changed", keep)
			}
			for _, m := range mountsUnder(dir) {
				exec.Command("umount", m).Run()
			}
			closeTemplates()
			waitNoLoops(t, dir, "at the end")
		})
	}
}

// init warns about a template that is slow to boot and names the command
// that converts it; it is quiet about a fast one.
func TestInitWarnsSlowTemplate(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	slow := filepath.Join(dir, "slow.sqfs")
	if out, err := admin(t, "lxc-hook-loopimg", "template", slow, "--from", tplDir, "--format", "squashfs-gzip"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	lxcpath := filepath.Join(dir, "lxc")
	out, err := admin(t, "lxc-hook-loopimg", "init", "slow", "--template", slow, "-P", lxcpath, "--default-config", "/dev/null")
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	want := "lxc-hook-loopimg template " + filepath.Join(dir, "slow-lz4.sqfs") + " --from " + slow + " --format squashfs-lz4\n"
	if !strings.Contains(out, "gzip, which is slow to boot") || !strings.Contains(out, want) {
		t.Fatalf("init with a gzip squashfs: %q; want a warning naming %q", out, want)
	}
	// The command it names does what it says: an lz4 squashfs.
	suggested := strings.Fields(strings.TrimSpace(want))
	if out, err := admin(t, "lxc-hook-loopimg", suggested[1:]...); err != nil {
		t.Fatalf("the suggested command: %v %s", err, out)
	}
	if got := squashfsCompression(t, filepath.Join(dir, "slow-lz4.sqfs")); got != 5 {
		t.Errorf("the suggested conversion wrote squashfs compression id %d, want 5 (lz4)", got)
	}
	// A name that says squashfs, without --format: lz4, the squashfs
	// default.
	fast := filepath.Join(dir, "fast.sqfs")
	if out, err := admin(t, "lxc-hook-loopimg", "template", fast, "--from", slow); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	out, err = admin(t, "lxc-hook-loopimg", "init", "fast", "--template", fast, "-P", lxcpath, "--default-config", "/dev/null")
	if err != nil || strings.Contains(out, "warning") {
		t.Errorf("init with an lz4 squashfs: %v %q; want no warning", err, out)
	}
	assertNoLoops(t, dir, "after init")
}

// The README's flow for an unprivileged container (issue 20): customise
// it, make a template of it. Its writes are stored with its mapped host
// IDs (its root's as 100000, its uid 1000's as 101000, a capability its
// root set as revision 3 with root ID 100000); the template holds the IDs
// the container saw (0 and 1000, a plain capability), the template's own
// files stay as they were, setuid and hardlinks too; a privileged
// container booted from the template sees the same owners.
func TestTemplateFromUnprivileged(t *testing.T) {
	requireEnv(t)
	for _, hook := range []string{"lxc-hook-overlay", "lxc-hook-loopimg"} {
		t.Run(hook, func(t *testing.T) {
			dir := testDir(t)
			src := filepath.Join(dir, "src")
			os.Mkdir(src, 0o755)
			richTree(t, src)
			base := filepath.Join(dir, "base.squashfs")
			if out, err := admin(t, hook, "template", base, "--from", src); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			upper := filepath.Join(dir, "layer")
			img := filepath.Join(dir, "layer.img")
			args := []string{"--lower", base, "--upper", upper}
			if hook == "lxc-hook-loopimg" {
				args = []string{"--lower", base, "--image", img, "--size", "32M"}
			}
			c := unprivCtr(t, hook, args...)
			c.mustStart()
			c.mustSh("echo r > /rootfile && busybox ln /rootfile /rootlink && mkdir -p /home/u && echo u > /home/u/f && busybox chown -R 1000:1000 /home/u && " +
				"echo s > /suid && busybox chmod 4755 /suid && echo c > /capfile && busybox chmod 755 /capfile && " +
				// A copy-up of a template file owned by 1234:5678, mode and time kept.
				"busybox chmod 640 /props/owned && test \"$(stat -c %u:%g /rootfile /home/u/f /props/owned)\" = \"$(printf '0:0\\n1000:1000\\n1234:5678')\" && sync")
			// The container's root sets a file capability, from its own
			// user namespace, as setcap inside would.
			if out, err := exec.Command("nsenter", "-t", strconv.Itoa(c.pid()), "-U", "--", "setcap", "cap_net_raw+ep", fmt.Sprintf("/proc/%d/root/capfile", c.pid())).CombinedOutput(); err != nil {
				t.Fatalf("setcap inside the container's user namespace: %v %s", err, out)
			}
			c.stop(false)
			// What the layer holds on the host: the mapped IDs.
			if hook == "lxc-hook-overlay" {
				if uid, _ := ownerOf(t, filepath.Join(upper, "upper", "rootfile")); uid != unprivBase {
					t.Fatalf("the layer stores /rootfile as uid %d, want %d (the container's root mapped)", uid, unprivBase)
				}
				if uid, _ := ownerOf(t, filepath.Join(upper, "upper", "home", "u", "f")); uid != unprivBase+1000 {
					t.Fatalf("the layer stores /home/u/f as uid %d, want %d", uid, unprivBase+1000)
				}
				if r := capRootID(t, filepath.Join(upper, "upper", "capfile")); r != int64(unprivBase) {
					t.Fatalf("the layer stores /capfile's capability with root ID %d, want %d", r, unprivBase)
				}
			} else if got := hostOwnerInImage(t, img, "/upper/rootfile"); got != unprivRoot {
				t.Fatalf("the layer image stores /rootfile as uid %s, want %s", got, unprivRoot)
			}

			formats := map[string]string{"squashfs": filepath.Join(dir, "flat.squashfs"), "erofs": filepath.Join(dir, "flat.erofs"), "dir": filepath.Join(dir, "flat") + "/"}
			if hook == "lxc-hook-loopimg" {
				formats = map[string]string{"squashfs": formats["squashfs"]}
			}
			for name, flat := range formats {
				out, err := admin(t, hook, "template", flat, "--from", c.name, "-P", c.lxcpath)
				if err != nil {
					t.Fatalf("template %s --from an unprivileged container: %v %s", name, err, out)
				}
				root := mountTemplate(t, strings.TrimSuffix(flat, "/"))
				checkProps(t, root, "template of an unprivileged container, "+name)
				for p, want := range map[string][2]uint32{"rootfile": {0, 0}, "rootlink": {0, 0}, "home/u": {1000, 1000}, "home/u/f": {1000, 1000}, "suid": {0, 0}, "capfile": {0, 0}, "props/xattr": {0, 0}, "etc/hostname": {0, 0}, ".": {0, 0}} {
					if u, g := ownerOf(t, filepath.Join(root, p)); u != want[0] || g != want[1] {
						t.Errorf("%s: /%s owned by %d:%d, want %d:%d", name, p, u, g, want[0], want[1])
					}
				}
				var a, b unix.Stat_t
				unix.Lstat(filepath.Join(root, "rootfile"), &a)
				unix.Lstat(filepath.Join(root, "rootlink"), &b)
				if a.Ino != b.Ino || a.Nlink != 2 {
					t.Errorf("%s: /rootfile and /rootlink are not one hardlinked file (inodes %d %d, links %d)", name, a.Ino, b.Ino, a.Nlink)
				}
				if a.Mode&0o7777 != 0o644 {
					t.Errorf("%s: /rootfile mode %o", name, a.Mode&0o7777)
				}
				unix.Lstat(filepath.Join(root, "suid"), &a)
				if a.Mode&0o7777 != 0o4755 {
					t.Errorf("%s: /suid mode %o, want 4755", name, a.Mode&0o7777)
				}
				if hook == "lxc-hook-overlay" {
					// The root ID 100000 translated: a plain capability of
					// the template's root, as the template's own.
					if r := capRootID(t, filepath.Join(root, "capfile")); r != -1 {
						t.Errorf("%s: /capfile's capability has root ID %d, want a revision 2 one (root's)", name, r)
					}
					buf := make([]byte, 64)
					if n, err := unix.Lgetxattr(filepath.Join(root, "capfile"), "security.capability", buf); err != nil || !bytes.Equal(buf[:n], capNetRawEP()) {
						t.Errorf("%s: /capfile security.capability %x %v, want %x", name, buf[:max(n, 0)], err, capNetRawEP())
					}
				}
				if left, _ := filepath.Glob(filepath.Join(dir, ".flat*")); len(left) > 0 {
					t.Errorf("%s: template left %v", name, left)
				}
			}

			// A privileged container booted from the template sees the
			// container's owners.
			p := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", formats["squashfs"], "--upper", filepath.Join(dir, "priv-layer")}})
			p.mustStart()
			if got := p.mustSh("stat -c %u:%g /rootfile /home/u/f /suid /props/owned"); got != "0:0\n1000:1000\n0:0\n1234:5678\n" {
				t.Errorf("inside a privileged container from the template: owners %q", got)
			}
			p.stop(false)
			for _, m := range mountsUnder(dir) {
				exec.Command("umount", m).Run()
			}
			closeTemplates()
			waitNoLoops(t, dir, "at the end")
		})
	}
}

// squashfsCompression reads a squashfs image's compression id (5 is lz4),
// failing the test if the file is not a squashfs.
func squashfsCompression(t *testing.T, file string) uint16 {
	t.Helper()
	b := make([]byte, 96)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, 0); err != nil || binary.LittleEndian.Uint32(b) != 0x73717368 {
		t.Fatalf("%s is not a squashfs (%v, magic %x)", file, err, b[:4])
	}
	return binary.LittleEndian.Uint16(b[20:])
}

// isErofs reports whether file is an erofs image (magic at 1024).
func isErofs(t *testing.T, file string) bool {
	t.Helper()
	b := make([]byte, 4)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = f.ReadAt(b, 1024)
	return err == nil && binary.LittleEndian.Uint32(b) == 0xE0F5E1E2
}

// template FILE writes the format FILE's name says (issue 20: every
// "template NAME.squashfs" wrote erofs); a --format the name contradicts,
// or a name that says no format without --format, is refused with one
// line naming the fix, and nothing is written.
func TestTemplateFormatFromName(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	run := func(args ...string) (string, error) {
		return admin(t, "lxc-hook-overlay", append([]string{"template"}, args...)...)
	}
	sq := filepath.Join(dir, "t.squashfs")
	if out, err := run(sq, "--from", tplDir); err != nil || !strings.Contains(out, "(squashfs-lz4, ") {
		t.Fatalf("%s: %v %s", sq, err, out)
	}
	if c := squashfsCompression(t, sq); c != 5 {
		t.Errorf("%s: compression id %d, want 5 (lz4)", sq, c)
	}
	zst := filepath.Join(dir, "z.squashfs")
	if out, err := run(zst, "--from", tplDir, "--format", "squashfs-zstd"); err != nil || squashfsCompression(t, zst) != 6 {
		t.Errorf("%s --format squashfs-zstd: %v %s", zst, err, out)
	}
	ero := filepath.Join(dir, "t.erofs")
	if out, err := run(ero, "--from", tplDir); err != nil || !isErofs(t, ero) {
		t.Errorf("%s: %v %s", ero, err, out)
	}
	d := filepath.Join(dir, "t.d")
	if out, err := run(d+"/", "--from", tplDir); err != nil {
		t.Errorf("%s/: %v %s", d, err, out)
	} else if fi, err := os.Lstat(filepath.Join(d, "bin", "busybox")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("%s/ is not the extracted template: %v", d, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{filepath.Join(dir, "m.squashfs"), "--format", "erofs"}, "is named like a squashfs image, but --format erofs writes an erofs image: name it " + filepath.Join(dir, "m.erofs")},
		{[]string{filepath.Join(dir, "m.erofs"), "--format", "squashfs-lz4"}, "name it " + filepath.Join(dir, "m.squashfs")},
		{[]string{filepath.Join(dir, "m.img")}, ".img names no filesystem"},
		{[]string{filepath.Join(dir, "m.ext4")}, "template does not write them"},
		{[]string{filepath.Join(dir, "m")}, "has no extension"},
	} {
		out, err := run(append(tc.args, "--from", tplDir)...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(out, tc.want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("template %v: %v %q; want exit 2 and one line with %q", tc.args, err, out, tc.want)
		}
		if exists(tc.args[0]) {
			t.Errorf("%s written after a refusal", tc.args[0])
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
