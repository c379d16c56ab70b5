package test

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Issue 18 items 2 and 4: host root uses a writable layer, an image or a
// template only where no user other than root can change it, and follows
// no link under a layer or beside an image. The attacker is a real
// non-root user, made here and removed at the end; what it plants it
// plants itself.

type attacker struct {
	t        *testing.T
	name     string
	uid, gid int
}

// newAttacker adds a system user (no home, no login, no subordinate ids)
// of this run's own for this test (testUser) and removes it at cleanup.
func newAttacker(t *testing.T) *attacker {
	t.Helper()
	name, uid := testUser(t)
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{t: t, name: name, uid: uid}
	a.gid, _ = strconv.Atoi(u.Gid)
	return a
}

// run runs argv as the attacker.
func (a *attacker) run(argv ...string) {
	a.t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid)}}
	if out, err := cmd.CombinedOutput(); err != nil {
		a.t.Fatalf("as %s: %v: %v %s", a.name, argv, err, out)
	}
}

// reachableDir is a directory for this test that the attacker can reach
// (search permission on the way: the test run's root is 0700).
func reachableDir(t *testing.T) string {
	t.Helper()
	if err := os.Chmod(workRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	d := testDir(t)
	if err := os.Chmod(d, 0o711); err != nil {
		t.Fatal(err)
	}
	return d
}

func mkdirOwned(t *testing.T, p string, mode uint32, uid, gid int) string {
	t.Helper()
	if err := unix.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	return p
}

// victim is a root-owned file (or directory) the attacker wants changed;
// unchanged checks its bytes, owner and mode.
type victim struct {
	path string
	sha  string
	st   unix.Stat_t
	dir  bool
}

func newVictim(t *testing.T, dir, name string) *victim {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("root's precious data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := &victim{path: p, sha: fileSHA(t, p)}
	unix.Lstat(p, &v.st)
	return v
}

func newVictimDir(t *testing.T, dir, name string) *victim {
	t.Helper()
	p := filepath.Join(dir, name)
	os.Mkdir(p, 0o755)
	os.WriteFile(filepath.Join(p, "file"), []byte("root's precious data\n"), 0o644)
	v := &victim{path: p, sha: treeSHA(t, p), dir: true}
	unix.Lstat(p, &v.st)
	return v
}

func (v *victim) unchanged(t *testing.T) {
	t.Helper()
	sha := ""
	if v.dir {
		sha = treeSHA(t, v.path)
	} else {
		sha = fileSHA(t, v.path)
	}
	var st unix.Stat_t
	unix.Lstat(v.path, &st)
	if sha != v.sha || st.Uid != v.st.Uid || st.Gid != v.st.Gid || st.Mode != v.st.Mode || st.Size != v.st.Size {
		t.Fatalf("victim %s changed: owner %d:%d mode %o size %d (was %d:%d %o %d), content changed %v",
			v.path, st.Uid, st.Gid, st.Mode, st.Size, v.st.Uid, v.st.Gid, v.st.Mode, v.st.Size, sha != v.sha)
	}
}

// refused starts c, wants it refused, and returns its hook's ERROR lines,
// which must contain every one of want.
func refused(t *testing.T, c *ctr, want ...string) string {
	t.Helper()
	if err := c.start(); err == nil {
		c.stop(true)
		t.Fatal("the container started")
	}
	line := strings.Join(c.hookLogLines("ERROR"), "\n")
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Fatalf("the LXC log's ERROR lines lack %q:\n%s", w, line)
		}
	}
	return line
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// (a) --upper in a directory the user owns; (b) --image in a directory
// anyone can write: refused in the LXC log, naming the directory, its
// owner and mode, and the fix; nothing is made there.
func TestUntrustedLayerDirectoriesRefused(t *testing.T) {
	requireEnv(t)
	m := newAttacker(t)
	d := reachableDir(t)
	tpl := filepath.Join(d, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)

	mine := mkdirOwned(t, filepath.Join(d, "mallory"), 0o755, m.uid, m.gid)
	upper := filepath.Join(mine, "layer")
	for _, hook := range []string{"lxc-hook-overlay", "lxc-hook-aufs"} {
		t.Run(hook, func(t *testing.T) {
			args := []string{"--lower", tpl, "--upper", upper}
			if hook == "lxc-hook-aufs" {
				args = append(args, "--fallback=overlay") // no AuFS in mainline kernels
			}
			c := newCtr(t, ctrOpts{hook: hook, args: args})
			line := refused(t, c, `--upper "`+upper+`" is refused: `+mine+" is not owned by root",
				m.name+" (uid "+strconv.Itoa(m.uid), "mode 0755", "chown root:root "+mine)
			if !strings.Contains(line, " "+c.name+" ") || !strings.Contains(line, "pre-mount") {
				t.Fatalf("the line does not name the container and hook: %s", line)
			}
			if e := entries(t, mine); len(e) != 0 {
				t.Fatalf("a refused start made %v in the user's directory", e)
			}
		})
	}
	t.Run("loopimg", func(t *testing.T) {
		open := mkdirOwned(t, filepath.Join(d, "open"), 0o777, 0, 0)
		img := filepath.Join(open, "layer.img")
		c := newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", tpl, "--image", img, "--size", "64M"}})
		refused(t, c, `--image "`+img+`" is refused: `+open+" is writable by others", "mode 0777", "chmod o-w "+open)
		if e := entries(t, open); len(e) != 0 {
			t.Fatalf("a refused start made %v in the open directory", e)
		}
		assertNoLoops(t, d, "after a refused start")
	})
	// The operator commands say the same before anything is done.
	t.Run("status and copy", func(t *testing.T) {
		c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl, "--upper", upper}})
		out, _ := exec.Command(filepath.Join(binDir, "lxc-hook-overlay"), "status", c.name, "-P", c.lxcpath).CombinedOutput()
		if !strings.Contains(string(out), "refused:   --upper \""+upper+"\" is refused") {
			t.Fatalf("status does not show the refusal:\n%s", out)
		}
		os.Mkdir(upper, 0o700) // as if the layer existed (made by the user)
		os.Lchown(upper, m.uid, m.gid)
		out, err := exec.Command(filepath.Join(binDir, "lxc-hook-overlay"), "copy", c.name, c.name+"x", "-P", c.lxcpath).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "is refused: "+mine+" is not owned by root") {
			t.Fatalf("copy of a layer the user can change: %v %s", err, out)
		}
		if exists(filepath.Join(c.lxcpath, c.name+"x")) {
			t.Fatal("the refused copy left its directory")
		}
	})
}

// (c) Links the user planted where the hooks create, write or chown: at
// the image path, at its temporary name, and inside a layer directory the
// user owned when it planted them (root took the directory over since,
// as the refusal of (a) tells it to: chown root:root, chmod go-w). The
// hooks refuse, or write beside the link: the file the link points to is
// byte for byte, owner and mode, what it was.
func TestPlantedLinksNeverFollowed(t *testing.T) {
	requireEnv(t)
	m := newAttacker(t)
	d := reachableDir(t)
	tpl := filepath.Join(d, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	v := newVictim(t, d, "victim")
	vdir := newVictimDir(t, d, "victimdir")
	// A root-owned sticky directory, as /tmp: the user can add entries.
	sticky := mkdirOwned(t, filepath.Join(d, "sticky"), 0o1777, 0, 0)

	t.Run("image path", func(t *testing.T) {
		img := filepath.Join(sticky, "a.img")
		m.run("ln", "-s", v.path, img)
		c := newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", tpl, "--image", img, "--size", "64M"}})
		refused(t, c, `--image "`+img+`" is refused: it is not owned by root`, m.name)
		v.unchanged(t)
	})
	t.Run("image temporary name", func(t *testing.T) {
		img := filepath.Join(sticky, "b.img")
		m.run("ln", "-s", v.path, filepath.Join(sticky, ".b.img.creating"))
		c := newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", tpl, "--image", img, "--size", "64M"}})
		refused(t, c, filepath.Join(sticky, ".b.img.creating")+" is a symbolic link")
		v.unchanged(t)
		if exists(img) {
			t.Fatal("an image was made")
		}
	})

	// A layer the user owned and planted in, then taken over by root.
	planted := func(t *testing.T, name, target string) string {
		layer := filepath.Join(d, "layer-"+strings.Trim(strings.ReplaceAll(name, ".", "-"), "-"))
		mkdirOwned(t, layer, 0o700, m.uid, m.gid)
		if name != "upper" && name != "work" {
			os.Mkdir(filepath.Join(layer, "upper"), 0o755)
			os.Mkdir(filepath.Join(layer, "work"), 0o700)
			os.WriteFile(filepath.Join(layer, "lxc-hook-layer"), []byte("overlay\n"), 0o600)
			if name == "lxc-hook-layer" {
				os.Remove(filepath.Join(layer, "lxc-hook-layer"))
			}
		}
		m.run("ln", "-s", target, filepath.Join(layer, name))
		os.Lchown(layer, 0, 0) // root takes the directory, not what is in it
		return layer
	}
	for _, tc := range []struct {
		name   string
		target *victim
	}{
		{"upper", vdir}, {"work", vdir},
		{"lxc-hook-layer", v}, {"lxc-hook-owner", v}, {"lxc-hook-in-use", v}, {"lxc-hook-idmap", v},
	} {
		t.Run("layer "+tc.name, func(t *testing.T) {
			layer := planted(t, tc.name, tc.target.path)
			c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl, "--upper", layer}})
			refused(t, c, filepath.Join(layer, tc.name)+" is a symbolic link")
			v.unchanged(t)
			vdir.unchanged(t)
		})
	}
	// The names earlier versions wrote first and renamed: a link there
	// was written through (truncating its target). Now the start works
	// and the link is neither followed nor used.
	t.Run("layer old temporary names", func(t *testing.T) {
		layer := planted(t, "lxc-hook-layer.tmp", v.path)
		for _, n := range []string{"lxc-hook-owner.tmp", "lxc-hook-in-use.tmp", "lxc-hook-idmap.tmp"} {
			os.Symlink(v.path, filepath.Join(layer, n))
		}
		c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl, "--upper", layer}})
		c.mustStart()
		c.stop(true)
		v.unchanged(t)
	})
}

// (d) A hardlink at the image's temporary name: to a file of the user's
// (refused: not root's), or to root's file (refused: a second name, as
// where protected_hardlinks is off); the other name's file is unchanged.
func TestHardlinkedTemporaryImageRefused(t *testing.T) {
	requireEnv(t)
	m := newAttacker(t)
	d := reachableDir(t)
	tpl := filepath.Join(d, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	sticky := mkdirOwned(t, filepath.Join(d, "sticky"), 0o1777, 0, 0)

	mine := filepath.Join(sticky, "mine")
	m.run("sh", "-c", "echo the user own data > "+mine)
	mv := &victim{path: mine, sha: fileSHA(t, mine)}
	m.run("ln", mine, filepath.Join(sticky, ".c.img.creating"))
	unix.Lstat(mine, &mv.st)
	c := newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", tpl, "--image", filepath.Join(sticky, "c.img"), "--size", "64M"}})
	refused(t, c, filepath.Join(sticky, ".c.img.creating")+" belongs to uid "+strconv.Itoa(m.uid))
	mv.unchanged(t)

	v := newVictim(t, sticky, "roots")
	if err := os.Link(v.path, filepath.Join(sticky, ".e.img.creating")); err != nil {
		t.Fatal(err)
	}
	unix.Lstat(v.path, &v.st) // two links now
	c = newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", tpl, "--image", filepath.Join(sticky, "e.img"), "--size", "64M"}})
	refused(t, c, filepath.Join(sticky, ".e.img.creating")+" has 2 names")
	v.unchanged(t)
	if exists(filepath.Join(sticky, "c.img")) || exists(filepath.Join(sticky, "e.img")) {
		t.Fatal("an image was made")
	}
	assertNoLoops(t, d, "after the refused starts")
}

// (e) A template the user can replace: in a directory anyone can write,
// or the user's own file. Refused by the start, by init and by template
// --from, naming it; nothing is mounted.
func TestUntrustedTemplateRefused(t *testing.T) {
	requireEnv(t)
	m := newAttacker(t)
	d := reachableDir(t)
	open := mkdirOwned(t, filepath.Join(d, "open"), 0o777, 0, 0)
	inOpen := filepath.Join(open, "tpl.squashfs")
	copyFile(t, tplSquash, inOpen)
	theirs := filepath.Join(d, "theirs.squashfs")
	copyFile(t, tplSquash, theirs)
	os.Chown(theirs, m.uid, m.gid)

	for _, tc := range []struct{ tpl, at, why string }{
		{inOpen, open, " is writable by others"},
		{theirs, "it", " is not owned by root"},
	} {
		want := `lower "` + tc.tpl + `" is refused: ` + tc.at + tc.why
		c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tc.tpl, "--upper", filepath.Join(d, "layer")}})
		refused(t, c, want)
		assertNoLoops(t, d, "after a refused start")

		out, err := exec.Command(filepath.Join(binDir, "lxc-hook-loopimg"), "init", "x", "--template", tc.tpl, "-P", filepath.Join(d, "lxc")).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("init --template %s: %v %s", tc.tpl, err, out)
		}
		out, err = exec.Command(filepath.Join(binDir, "lxc-hook-loopimg"), "template", filepath.Join(d, "out.erofs"), "--from", tc.tpl).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.why) {
			t.Fatalf("template --from %s: %v %s", tc.tpl, err, out)
		}
		if exists(filepath.Join(d, "out.erofs")) {
			t.Fatal("template wrote its output")
		}
	}
	assertNoLoops(t, d, "after the refused commands")
}

// Item 4: lxc-hook-aufs records and checks the layer's owner as overlay
// does: a second container whose config names the same --upper (a copy
// with its hook arguments unchanged) is refused while the first still
// names it, even when the first is stopped.
func TestAufsChecksLayerOwner(t *testing.T) {
	requireEnv(t)
	if kernelHasAufs() {
		t.Skip("this kernel has AuFS; the test runs the overlay fallback")
	}
	dir := testDir(t)
	upper := filepath.Join(dir, "layer")
	args := []string{"--lower", tplSquash, "--upper", upper, "--fallback=overlay"}
	a := newCtr(t, ctrOpts{hook: "lxc-hook-aufs", args: args})
	b := newCtr(t, ctrOpts{hook: "lxc-hook-aufs", args: args})
	a.mustStart()
	a.stop(true)
	refused(t, b, "belongs to the container of "+filepath.Join(a.dir, "config"))
	a.mustStart() // still its own
	a.stop(true)
}

// A user mounts a FUSE filesystem (bindfs of their own directory, claiming
// root:root 0755 for everything) on a directory of their own inside a
// root-owned one: every stat then says root's, yet the user's server
// decides what is there. As on a Debian host where /etc/fuse.conf has
// user_allow_other (and /dev/fuse is 0666, as udev makes it): both are set
// for the test and put back. The hooks refuse a layer, image or template
// on FUSE, naming the mount, and make nothing in the user's directory.
func TestFUSELayerRefused(t *testing.T) {
	requireEnv(t)
	needTools(t, "apt-get install bindfs", "bindfs", "fusermount")
	m := newAttacker(t)
	d := reachableDir(t)
	tpl := filepath.Join(d, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	allowUserFUSE(t)

	src := mkdirOwned(t, filepath.Join(d, "mallory-src"), 0o755, m.uid, m.gid)
	mnt := mkdirOwned(t, filepath.Join(d, "mallory-fuse"), 0o755, m.uid, m.gid)
	m.run("bindfs", "-u", "root", "-g", "root", "-p", "0755", src, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil || st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("the user's FUSE mount does not pass as root's (%v, owner %d:%d): the attack is not set up", err, st.Uid, st.Gid)
	}
	fuseLine := mnt + " is on a FUSE filesystem"

	t.Run("overlay upper", func(t *testing.T) {
		upper := filepath.Join(mnt, "layer")
		c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl, "--upper", upper}})
		refused(t, c, `--upper "`+upper+`" is refused: `+fuseLine)
	})
	t.Run("loopimg image", func(t *testing.T) {
		img := filepath.Join(mnt, "layer.img")
		c := newCtr(t, ctrOpts{hook: "lxc-hook-loopimg", args: []string{"--lower", tpl, "--image", img, "--size", "64M"}})
		refused(t, c, `--image "`+img+`" is refused: `+fuseLine)
		assertNoLoops(t, d, "after a refused start")
	})
	t.Run("template", func(t *testing.T) {
		copyFile(t, tplSquash, filepath.Join(src, "tpl.squashfs"))
		lower := filepath.Join(mnt, "tpl.squashfs")
		c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", lower, "--upper", filepath.Join(d, "layer")}})
		refused(t, c, "is on a FUSE filesystem")
		os.Remove(filepath.Join(src, "tpl.squashfs"))
	})
	t.Run("run dir", func(t *testing.T) {
		run := filepath.Join(mnt, "run")
		c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl, "--upper", filepath.Join(d, "layer-rundir"), "--run-dir", run}})
		refused(t, c, `runtime directory "`+run+`/`, "is on a FUSE filesystem ("+mnt+")")
	})
	if e := entries(t, src); len(e) != 0 {
		t.Fatalf("refused starts made %v in the user's directory", e)
	}
	// Without allow_other (fuse.conf's default) root cannot even stat the
	// mount: the refusal still says FUSE, not a bare "permission denied".
	t.Run("mounted without allow_other", func(t *testing.T) {
		src2 := mkdirOwned(t, filepath.Join(d, "mallory-src2"), 0o755, m.uid, m.gid)
		mnt2 := mkdirOwned(t, filepath.Join(d, "mallory-fuse2"), 0o755, m.uid, m.gid)
		m.run("bindfs", "--no-allow-other", src2, mnt2)
		t.Cleanup(func() { exec.Command("umount", mnt2).Run() })
		upper := filepath.Join(mnt2, "layer")
		c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl, "--upper", upper}})
		refused(t, c, `--upper "`+upper+`" is refused: `+mnt2+" is on a FUSE filesystem", "not even readable by root")
	})
}

// allowUserFUSE lets non-root users mount FUSE filesystems others can
// reach (user_allow_other), as some Debian hosts do, until the test ends.
func allowUserFUSE(t *testing.T) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/dev/fuse", &st); err != nil {
		t.Fatalf("no /dev/fuse: %v", err)
	}
	if err := unix.Chmod("/dev/fuse", 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Chmod("/dev/fuse", st.Mode&0o7777) })
	conf, err := os.ReadFile("/etc/fuse.conf")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/fuse.conf", append(append([]byte(nil), conf...), "\nuser_allow_other\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if conf == nil {
			os.Remove("/etc/fuse.conf")
		} else {
			os.WriteFile("/etc/fuse.conf", conf, 0o644)
		}
	})
}
