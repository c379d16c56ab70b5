package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
)

// Subordinate ID ranges (issue 18): an unprivileged container's host IDs
// must be nobody else's. A user whose /etc/subuid range overlaps them can
// become the container's users with newuidmap; a local account inside
// them is one of the container's users on the host.

// etcFile is a file to put in the overlaid /etc of runInEtc.
type etcFile struct {
	content string
	mode    os.FileMode
}

// etcAfter is a file of the overlaid /etc after the command.
type etcAfter struct {
	content string
	mode    os.FileMode
}

// shadowDefs is login.defs as Debian 12 ships its subordinate ID keys.
const shadowDefs = "SUB_UID_MIN 100000\nSUB_UID_MAX 600100000\nSUB_UID_COUNT 65536\nSUB_GID_MIN 100000\nSUB_GID_MAX 600100000\nSUB_GID_COUNT 65536\n"

// runInEtc runs a command with the host's /etc under an overlayfs whose
// upper layer is a test directory, in a private mount namespace of a
// thread of this test (the command inherits it): the files given are
// written there, and whatever the command writes (init adding root's
// range, with its locks and its rename) lands in the upper layer, never in
// the host's /etc. It returns the output and the named files afterwards
// (read in the same namespace).
func runInEtc(t *testing.T, files map[string]etcFile, name string, args ...string) (string, map[string]etcAfter, error) {
	t.Helper()
	dir := testDir(t)
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	os.Mkdir(upper, 0o755)
	os.Mkdir(work, 0o755)
	type result struct {
		out   string
		after map[string]etcAfter
		err   error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with its namespace
		fail := func(err error) { done <- result{err: err} }
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			fail(err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fail(err)
			return
		}
		if err := unix.Mount("overlay", "/etc", "overlay", 0, "lowerdir=/etc,upperdir="+upper+",workdir="+work); err != nil {
			fail(fmt.Errorf("overlay on /etc: %w", err))
			return
		}
		for n, f := range files {
			p := filepath.Join("/etc", n)
			if err := os.WriteFile(p, []byte(f.content), 0o600); err != nil {
				fail(err)
				return
			}
			if err := os.Chmod(p, f.mode); err != nil {
				fail(err)
				return
			}
		}
		cmd := exec.Command(name, args...)
		// This process's PATH: whether LXC finds newuidmap is this run's.
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		if coverDir != "" {
			cmd.Env = append(cmd.Env, "GOCOVERDIR="+coverDir)
		}
		out, err := cmd.CombinedOutput()
		after := map[string]etcAfter{}
		for _, n := range []string{"subuid", "subgid"} {
			p := filepath.Join("/etc", n)
			b, rerr := os.ReadFile(p)
			fi, serr := os.Stat(p)
			if rerr == nil && serr == nil {
				after[n] = etcAfter{string(b), fi.Mode().Perm()}
			}
		}
		done <- result{string(out), after, err}
	}()
	r := <-done
	return r.out, r.after, r.err
}

// idsLXCPath is an lxcpath of the test's own (block numbers count the
// containers under it), reachable by unprivileged containers' roots.
func idsLXCPath(t *testing.T) (lxcpath, defaults string) {
	t.Helper()
	if err := os.Chmod(workRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	dir := testDir(t)
	os.Chmod(dir, 0o711)
	lxcpath = filepath.Join(dir, "lxc")
	os.Mkdir(lxcpath, 0o755)
	defaults = filepath.Join(dir, "default.conf")
	os.WriteFile(defaults, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"), 0o644)
	return lxcpath, defaults
}

// ctrAt is the test's handle on a container init or copy wrote under
// lxcpath; its LXC log goes to a file the test reads.
func ctrAt(t *testing.T, lxcpath, name string) *ctr {
	t.Helper()
	c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name), logFile: filepath.Join(lxcpath, name, name+".log")}
	if !configHas(t, c, "lxc.log.file = ") {
		f, err := os.OpenFile(filepath.Join(c.dir, "config"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("lxc.log.file = " + c.logFile + "\nlxc.log.level = INFO\n")
		f.Close()
	}
	t.Cleanup(func() {
		if c.state() != "STOPPED" {
			exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
		}
		if t.Failed() {
			t.Logf("LXC log of %s:\n%s", c.name, lastLines(c.log(), 30))
		}
	})
	return c
}

// startIn starts c with the /etc of files (runInEtc): where LXC maps IDs
// with newuidmap, that is where root's range must be, as on a host where
// init wrote it. The container keeps that mount namespace (its monitor's);
// hooks run there, everything else (attach, stop) works from anywhere.
func startIn(t *testing.T, files map[string]etcFile, c *ctr) {
	t.Helper()
	if out, _, err := runInEtc(t, files, "lxc-start", "-n", c.name, "-P", c.lxcpath); err != nil {
		t.Fatalf("lxc-start %s: %v: %s", c.name, err, strings.TrimSpace(out))
	}
	if s := c.state(); s != "RUNNING" {
		t.Fatalf("%s is %s after lxc-start", c.name, s)
	}
}

// idmapLines are a config's lxc.idmap lines.
func idmapLines(t *testing.T, c *ctr) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "lxc.idmap") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func blockLines(start uint64) string {
	return fmt.Sprintf("lxc.idmap = u 0 %d 65536\nlxc.idmap = g 0 %d 65536", start, start)
}

// The Debian case: the first user has 100000:65536 and root has no
// range. init gives root a range above every user's and above
// SUB_UID_MAX/SUB_GID_MAX (useradd never allocates there), writes it to
// both files keeping their lines and modes, says so, and maps the
// container into it; the container boots with its files owned there. A
// second init uses the same range and writes nothing.
func TestIDsInitGivesRootARangeNoUserHas(t *testing.T) {
	requireEnv(t)
	lxcpath, defaults := idsLXCPath(t)
	bin := filepath.Join(binDir, "lxc-hook-overlay")
	files := map[string]etcFile{
		"subuid":     {"alice:100000:65536\n", 0o644},
		"subgid":     {"alice:100000:65536\n", 0o640},
		"login.defs": {shadowDefs, 0o644},
	}
	name := uniqueName("ids")
	out, after, err := runInEtc(t, files, bin, "init", name, "--template", tplSquash, "-P", lxcpath, "--default-config", defaults, "--unprivileged")
	if err != nil {
		t.Fatalf("init --unprivileged: %v\n%s", err, out)
	}
	for _, want := range []string{"Gave root the subordinate ID range root:1000000000:1000000000 to /etc/subuid", "Gave root the subordinate ID range root:1000000000:1000000000 to /etc/subgid"} {
		if !strings.Contains(out, want) {
			t.Errorf("init does not say %q:\n%s", want, out)
		}
	}
	for n, mode := range map[string]os.FileMode{"subuid": 0o644, "subgid": 0o640} {
		if got := after[n]; got.content != "alice:100000:65536\nroot:1000000000:1000000000\n" || got.mode != mode {
			t.Errorf("/etc/%s afterwards: %q mode %o, want alice's line kept, root's added, mode %o", n, got.content, got.mode, mode)
		}
	}
	c := ctrAt(t, lxcpath, name)
	if got := idmapLines(t, c); got != blockLines(1_000_000_000) {
		t.Fatalf("config maps:\n%s", got)
	}
	startIn(t, map[string]etcFile{"subuid": {after["subuid"].content, 0o644}, "subgid": {after["subgid"].content, 0o640}}, c)
	if m := c.mustSh("cat /proc/self/uid_map"); !strings.Contains(m, "1000000000") {
		t.Fatalf("uid_map inside: %q", m)
	}
	c.mustSh("echo w > /root/w")
	c.stop(false)
	if u, g := ownerOf(t, filepath.Join(c.dir, "layer", "upper", "root", "w")); u != 1_000_000_000 || g != 1_000_000_000 {
		t.Fatalf("the container's file is %d:%d on the host, want root's range", u, g)
	}

	// Again, with the files as the first init left them.
	second := map[string]etcFile{"subuid": {after["subuid"].content, 0o644}, "subgid": {after["subgid"].content, 0o640}, "login.defs": files["login.defs"]}
	name2 := uniqueName("ids")
	out, after2, err := runInEtc(t, second, bin, "init", name2, "--template", tplSquash, "-P", lxcpath, "--default-config", defaults, "--unprivileged")
	if err != nil || strings.Contains(out, "Gave root") {
		t.Fatalf("second init: %v\n%s", err, out)
	}
	if after2["subuid"].content != after["subuid"].content || after2["subgid"].content != after["subgid"].content {
		t.Fatalf("the second init changed the files: %q %q", after2["subuid"].content, after2["subgid"].content)
	}
	if got := idmapLines(t, ctrAt(t, lxcpath, name2)); got != blockLines(1_000_000_000) {
		t.Fatalf("second config maps:\n%s", got)
	}
}

// A root range that overlaps another user's, or holds a local account, is
// refused by init with both lines and the fix named; nothing is written.
func TestIDsInitRefusesOverlappingRootRange(t *testing.T) {
	requireEnv(t)
	lxcpath, defaults := idsLXCPath(t)
	bin := filepath.Join(binDir, "lxc-hook-loopimg")
	files := map[string]etcFile{
		"subuid": {"alice:100000:65536\nroot:100000:65536\n", 0o644},
		"subgid": {"alice:100000:65536\nroot:100000:65536\n", 0o644},
	}
	name := uniqueName("ids")
	out, after, err := runInEtc(t, files, bin, "init", name, "--template", tplSquash, "-P", lxcpath, "--default-config", defaults, "--unprivileged")
	if err == nil {
		t.Fatalf("init accepted root's range overlapping alice's:\n%s", out)
	}
	for _, want := range []string{`/etc/subuid line 2 "root:100000:65536" overlaps /etc/subuid line 1 "alice:100000:65536"`, `/etc/subgid line 2 "root:100000:65536" overlaps /etc/subgid line 1 "alice:100000:65536"`, "usermod --del-subuids 100000-165535 --del-subgids 100000-165535 root", "run init again"} {
		if !strings.Contains(out, want) {
			t.Errorf("refusal lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(strings.TrimSpace(out), "\n"); n > 1 { // the slow-template warning may come first
		t.Errorf("refusal is not one line:\n%s", out)
	}
	if exists(filepath.Join(lxcpath, name)) {
		t.Fatal("the refused init wrote a container")
	}
	if after["subuid"].content != files["subuid"].content || after["subgid"].content != files["subgid"].content {
		t.Fatal("the refused init changed the files")
	}

	// A local account inside root's range.
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	files = map[string]etcFile{
		"subuid": {"root:100000:65536\n", 0o644},
		"subgid": {"root:100000:65536\n", 0o644},
		"passwd": {string(passwd) + "svc:x:120000:120000::/nonexistent:/usr/sbin/nologin\n", 0o644},
	}
	out, _, err = runInEtc(t, files, bin, "init", name, "--template", tplSquash, "-P", lxcpath, "--default-config", defaults, "--unprivileged")
	if err == nil || !strings.Contains(out, `root's range /etc/subuid line 1 "root:100000:65536" overlaps the local user svc (uid 120000, /etc/passwd line`) {
		t.Fatalf("init with a local account in root's range: %v\n%s", err, out)
	}
	if exists(filepath.Join(lxcpath, name)) {
		t.Fatal("the refused init wrote a container")
	}
}

// subIDUser makes a real system user (no home, no login) and gives it the
// subordinate range of 65536 IDs at start in the host's /etc/subuid and
// /etc/subgid, as usermod does for a sysadmin. remove (also run at
// cleanup) takes the range back and deletes the user, and fails the test
// if anything of it is left in the files.
func subIDUser(t *testing.T, start uint32) (name string, uid, gid uint32, remove func()) {
	t.Helper()
	needTools(t, "apt-get install passwd", "useradd", "usermod", "userdel")
	name = fmt.Sprintf("lxchooks%d", os.Getpid()%100000)
	if _, err := user.Lookup(name); err == nil {
		t.Fatalf("user %s exists already (left by a killed test run?): remove it with userdel %s", name, name)
	}
	// --system: useradd allocates it no range of its own (that would be
	// 100000:65536, the test suite's block); the one it gets is ours.
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	rng := fmt.Sprintf("%d-%d", start, uint64(start)+65535)
	removed := false
	remove = func() {
		if removed {
			return
		}
		removed = true
		exec.Command("usermod", "--del-subuids", rng, "--del-subgids", rng, name).Run()
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v %s", name, err, out)
		}
		for _, f := range []string{"/etc/subuid", "/etc/subgid", "/etc/passwd", "/etc/group"} {
			b, _ := os.ReadFile(f)
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, name+":") {
					t.Errorf("%s still has %q after the test", f, l)
				}
			}
		}
	}
	t.Cleanup(remove)
	if out, err := exec.Command("usermod", "--add-subuids", rng, "--add-subgids", rng, name).CombinedOutput(); err != nil {
		t.Fatalf("usermod --add-subuids: %v %s", err, out)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseUint(u.Uid, 10, 32)
	g, _ := strconv.ParseUint(u.Gid, 10, 32)
	return name, uint32(n), uint32(g), remove
}

// The attack and its refusal, with a real user: a container runs mapped
// onto IDs that a user then gets as a subordinate range (usermod
// --add-subuids). With newuidmap that user becomes the container's root on
// the host and kills the container's init (a process of another user
// namespace: signals go by host uid; /proc/PID/root stays closed, as
// ptrace needs the same user namespace). From then on pre-start refuses
// the container, naming the user's line in its LXC log, and status shows
// the error for it (and none for a container that overlaps nothing). Once
// the range is taken back, it starts again with its files.
func TestIDsOverlapRefusedAtStartAndShownByStatus(t *testing.T) {
	requireEnv(t)
	if err := os.Chmod(workRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	// Far from the suite's own block and from what init gives root; a
	// block of this run's own.
	base := freeTestBlock(3_000_000_000 + idmap.MinRange*uint32(os.Getpid()%4096))
	if newxidmapInstalled() {
		// LXC maps through newuidmap: root must have the range too.
		release, err := reserveForRoot(base)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(release)
	}
	dir := testDir(t)
	upper := filepath.Join(dir, "layer")
	c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tplSquash, "--upper", upper}, hookTypes: unprivHookTypes,
		extra: []string{fmt.Sprintf("lxc.idmap = u 0 %d 65536", base), fmt.Sprintf("lxc.idmap = g 0 %d 65536", base)}})
	closeToOthersFor(t, c.dir, base)
	c.mustStart()
	c.mustSh("echo mine > /root/mine && sync")

	name, uid, gid, remove := subIDUser(t, base)
	userLine := fmt.Sprintf("%s:%d:65536", name, base)

	killed := false
	t.Run("the user can become the container's root", func(t *testing.T) {
		// newuidmap is what lets a user map a user namespace onto its
		// subordinate range (package uidmap; scripts/deps.sh installs it
		// for this test): the very thing an overlap hands over.
		needTools(t, "apt-get install uidmap", "newuidmap")
		init, mon := c.pid(), monitorPID(t, c)
		m := fmt.Sprintf("%d,0,65536", base)
		cmd := exec.Command("unshare", "--user", "--map-users="+m, "--map-groups="+m, "--setuid", "0", "--setgid", "0",
			"kill", "-KILL", strconv.Itoa(init))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // where newuidmap was found
		cmd.Dir = "/"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("user %s (uid %d) with %s in /etc/subuid could not act as the container's root: %v %s", name, uid, userLine, err, out)
		}
		waitGone(t, init, "the container's init, killed by user "+name)
		waitGone(t, mon, "the LXC monitor after its container's init was killed") // its stop hooks are done
		killed = true
	})
	if !killed {
		c.stop(false)
	}

	if err := c.start(); err == nil {
		c.stop(true)
		t.Fatalf("a container mapped onto %s's subordinate range started", name)
	}
	waitLog(t, c, "ERROR", "pre-start", fmt.Sprintf("lxc.idmap %q", fmt.Sprintf("u 0 %d 65536", base)), `/etc/subuid line`, userLine, "newuidmap")

	other := unprivCtr(t, "lxc-hook-overlay", "--lower", tplSquash, "--upper", filepath.Join(dir, "other"))
	js, err := admin(t, "lxc-hook-overlay", "status", c.name, other.name, "-P", c.lxcpath, "--json")
	if err != nil {
		t.Fatalf("status --json: %v %s", err, js)
	}
	var st struct {
		Containers []struct {
			Name, Error string
			IDMap       []string `json:"idmap"`
		}
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil || len(st.Containers) != 2 {
		t.Fatalf("status --json: %v %s", err, js)
	}
	for _, e := range st.Containers {
		switch e.Name {
		case c.name:
			if !strings.Contains(e.Error, userLine) || !strings.Contains(e.Error, "start refused") || len(e.IDMap) != 2 {
				t.Errorf("status --json of the overlapping container: %+v", e)
			}
		case other.name:
			if e.Error != "" {
				t.Errorf("status --json shows an error for a container that overlaps nothing: %q", e.Error)
			}
		}
	}
	txt, _ := admin(t, "lxc-hook-overlay", "status", c.name, "-P", c.lxcpath)
	if !strings.Contains(txt, "  error:     start refused: lxc.idmap") || !strings.Contains(txt, userLine) || !strings.Contains(txt, "  layer:     directory "+upper) {
		t.Errorf("status:\n%s", txt)
	}

	remove()
	c.mustStart()
	if got := c.mustSh("cat /root/mine"); got != "mine\n" {
		t.Fatalf("after the range was taken back: %q", got)
	}
	c.stop(false)
}

// isolatedPair inits, with root's range root:1000000000:1000000000, a
// container of each layer kind with --isolated and one without, under an
// lxcpath of their own: blocks 1 and 2, and the shared block 0.
func isolatedPair(t *testing.T) (files map[string]etcFile, dir, img, shared *ctr) {
	t.Helper()
	lxcpath, defaults := idsLXCPath(t)
	files = map[string]etcFile{
		"subuid": {"alice:100000:65536\nroot:1000000000:1000000000\n", 0o644},
		"subgid": {"alice:100000:65536\nroot:1000000000:1000000000\n", 0o644},
	}
	initOne := func(hook, block string, extra ...string) *ctr {
		name := uniqueName("ids")
		args := append([]string{"init", name, "--template", tplSquash, "-P", lxcpath, "--default-config", defaults}, extra...)
		out, _, err := runInEtc(t, files, filepath.Join(binDir, hook), args...)
		if err != nil {
			t.Fatalf("%s init %s: %v\n%s", hook, strings.Join(extra, " "), err, out)
		}
		if block != "" && !strings.Contains(out, "Isolated: "+block+" of root's range") {
			t.Fatalf("init does not say which block it took (%s):\n%s", block, out)
		}
		return ctrAt(t, lxcpath, name)
	}
	dir = initOne("lxc-hook-overlay", "block 1", "--isolated")
	img = initOne("lxc-hook-loopimg", "block 2", "--isolated", "--size", "48M")
	shared = initOne("lxc-hook-overlay", "", "--unprivileged")
	return files, dir, img, shared
}

// hostOwnerOf is the host uid of a file of a container's layer: in the
// directory layer, or in the image (debugfs, without mounting it).
func hostOwnerOf(t *testing.T, c *ctr, path string) string {
	t.Helper()
	if img := filepath.Join(c.dir, "layer.img"); exists(img) {
		return hostOwnerInImage(t, img, "upper"+path)
	}
	u, _ := ownerOf(t, filepath.Join(c.dir, "layer", "upper", path))
	return strconv.FormatUint(uint64(u), 10)
}

// --isolated gives each container a block of root's range of its own: two
// containers get different blocks, each boots, and what each writes is
// owned on the host by its own block's root, nobody else's.
func TestIDsIsolatedContainersGetTheirOwnBlocks(t *testing.T) {
	requireEnv(t)
	files, a, b, shared := isolatedPair(t)
	want := map[*ctr]uint64{a: 1_000_065_536, b: 1_000_131_072, shared: 1_000_000_000}
	for c, start := range want {
		if got := idmapLines(t, c); got != blockLines(start) {
			t.Fatalf("%s maps:\n%s\nwant block at %d", c.name, got, start)
		}
	}
	for _, c := range []*ctr{a, b} {
		startIn(t, files, c)
		if m := c.mustSh("cat /proc/self/uid_map"); !strings.Contains(m, strconv.FormatUint(want[c], 10)) {
			t.Fatalf("%s: uid_map inside %q", c.name, m)
		}
		if got := c.mustSh("echo " + c.name + " > /root/mine && stat -c %u:%g /root/mine /etc/from-template"); got != "0:0\n0:0\n" {
			t.Fatalf("%s: owners inside %q", c.name, got)
		}
	}
	for _, c := range []*ctr{a, b} {
		c.stop(false)
		if got := hostOwnerOf(t, c, "/root/mine"); got != strconv.FormatUint(want[c], 10) {
			t.Fatalf("%s: its file is owned by %s on the host, want its own block's root %d", c.name, got, want[c])
		}
	}
}

// A copy of an isolated container gets a block of its own, and its layer
// follows: the copy command (directory layer) and lxc-copy through the
// clone hook (image layer) shift every file from the source's block to the
// new one, keeping modes (setuid too) and the owners inside; the copy
// boots, root still owns what it wrote, and the source keeps its block.
func TestIDsCopyOfIsolatedContainerMovesToItsOwnBlock(t *testing.T) {
	requireEnv(t)
	files, a, b, shared := isolatedPair(t)
	for _, c := range []*ctr{a, b, shared} {
		startIn(t, files, c)
		c.mustSh("echo " + c.name + " > /root/mine && busybox chmod 4755 /root/mine && echo u > /root/user && busybox chown 1000:1000 /root/user && sync")
		c.stop(false)
	}
	a2, b2 := uniqueName("ids"), uniqueName("ids")
	out, _, err := runInEtc(t, files, filepath.Join(binDir, "lxc-hook-overlay"), "copy", a.name, a2, "-P", a.lxcpath)
	if err != nil || !strings.Contains(out, "its own ID block 3 (host uids 1000196608-1000262143") {
		t.Fatalf("copy: %v\n%s", err, out)
	}
	if out, _, err := runInEtc(t, files, "lxc-copy", "-n", b.name, "-N", b2, "-P", b.lxcpath); err != nil {
		t.Fatalf("lxc-copy: %v\n%s\n%s", err, out, lastLines(b.log(), 10))
	}
	// (The clone hook says which block at INFO; init's containers log at
	// WARN: the copy's mapping below is what counts.)
	copies := map[*ctr]uint64{ctrAt(t, a.lxcpath, a2): 1_000_196_608, ctrAt(t, b.lxcpath, b2): 1_000_262_144}
	for c, start := range copies {
		if got := idmapLines(t, c); got != blockLines(start) {
			t.Fatalf("%s maps:\n%s", c.name, got)
		}
		if u, _ := ownerOf(t, c.dir); u != 0 && uint64(u) != start {
			t.Fatalf("%s's directory belongs to %d, neither host root nor its own root", c.name, u)
		}
		// On the host, before it ever ran: the shifted layer.
		if got := hostOwnerOf(t, c, "/root/mine"); got != strconv.FormatUint(start, 10) {
			t.Fatalf("%s: the copied file is owned by %s on the host, want %d", c.name, got, start)
		}
		startIn(t, files, c)
		if m := c.mustSh("cat /proc/self/uid_map"); !strings.Contains(m, strconv.FormatUint(start, 10)) {
			t.Fatalf("%s: uid_map inside %q", c.name, m)
		}
		if got := c.mustSh("stat -c '%u:%g %a' /root/mine /root/user /root && echo new > /root/new && stat -c %u:%g /root/new"); got != "0:0 4755\n1000:1000 644\n0:0 755\n0:0\n" {
			t.Fatalf("%s: inside the copy %q", c.name, got)
		}
		c.stop(false)
		if got := hostOwnerOf(t, c, "/root/new"); got != strconv.FormatUint(start, 10) {
			t.Fatalf("%s: its new file is owned by %s on the host, want %d", c.name, got, start)
		}
	}
	// A copy of a container without --isolated keeps the shared block, and
	// boots (its directory has the source's mode: its root reaches it).
	s2 := uniqueName("ids")
	if out, _, err := runInEtc(t, files, filepath.Join(binDir, "lxc-hook-overlay"), "copy", shared.name, s2, "-P", shared.lxcpath); err != nil || strings.Contains(out, "ID block") {
		t.Fatalf("copy of a shared-block container: %v\n%s", err, out)
	}
	sc := ctrAt(t, shared.lxcpath, s2)
	if got := idmapLines(t, sc); got != blockLines(1_000_000_000) {
		t.Fatalf("the copy of a shared-block container maps:\n%s", got)
	}
	startIn(t, files, sc)
	if got := sc.mustSh("stat -c '%u:%g %a' /root/mine"); got != "0:0 4755\n" {
		t.Fatalf("%s: %q", sc.name, got)
	}
	sc.stop(false)

	// The sources are as they were.
	for c, start := range map[*ctr]uint64{a: 1_000_065_536, b: 1_000_131_072} {
		if got := hostOwnerOf(t, c, "/root/mine"); got != strconv.FormatUint(start, 10) {
			t.Fatalf("source %s: its file moved to %s", c.name, got)
		}
		startIn(t, files, c)
		if got := c.mustSh("stat -c '%u:%g %a' /root/mine"); got != "0:0 4755\n" {
			t.Fatalf("source %s: %q", c.name, got)
		}
		c.stop(false)
	}
}
