package test

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// admin runs an operator command of a hook binary.
func admin(t *testing.T, hook string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, hook), args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if coverDir != "" {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+coverDir)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// adminSplit is admin with stdout and stderr apart.
func adminSplit(t *testing.T, hook string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, hook), args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if coverDir != "" {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+coverDir)
	}
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// initCtr runs "HOOK init NAME" into the test run's lxcpath with a default
// config that has no network (no lxcbr0 in CI) and no AppArmor.
func initCtr(t *testing.T, hook string, extra ...string) *ctr {
	t.Helper()
	return initAt(t, hook, filepath.Join(workRoot, "lxc"), tplSquash, extra...)
}

// init for each hook, then lxc-start, a write, stop, restart: the write is
// there; init on an existing name is refused and changes nothing.
func TestInitThenStart(t *testing.T) {
	requireEnv(t)
	for _, hook := range []string{"lxc-hook-overlay", "lxc-hook-loopimg"} {
		t.Run(hook, func(t *testing.T) {
			c := initCtr(t, hook, map[string][]string{"lxc-hook-loopimg": {"--size", "48M"}}[hook]...)
			cfg, _ := os.ReadFile(filepath.Join(c.dir, "config"))
			for _, want := range []string{"lxc.hook.pre-mount = " + filepath.Join(binDir, hook), "lxc.hook.stop = ", "--lower " + tplSquash, "lxc.mount.auto = proc:rw", "lxc.net.0.type = empty"} {
				if !strings.Contains(string(cfg), want) {
					t.Fatalf("config lacks %q:\n%s", want, cfg)
				}
			}
			if strings.Contains(string(cfg), "lxc.hook.post-stop") {
				t.Fatalf("init wrote lxc.hook.post-stop: one hook process per stop is the stop hook's:\n%s", cfg)
			}
			for _, line := range strings.Split(string(cfg), "\n") {
				if strings.HasPrefix(line, "lxc.cap.drop") && strings.Contains(line, "sys_boot") {
					t.Fatal("sys_boot dropped: halt and reboot from inside would not work")
				}
			}
			c.mustStart()
			c.mustSh("echo persisted > /root/p")
			c.stop(false)
			c.mustStart()
			if got := c.mustSh("cat /root/p"); got != "persisted\n" {
				t.Fatalf("after restart: %q", got)
			}
			if hook == "lxc-hook-loopimg" {
				kb, _ := strconv.Atoi(strings.Fields(c.mustSh("df -k / | tail -1"))[1])
				if kb > 48*1024 || kb < 32*1024 {
					t.Fatalf("df / shows %d KiB for a 48M cap", kb)
				}
			}
			c.stop(true)

			before, _ := os.ReadFile(filepath.Join(c.dir, "config"))
			out, err := admin(t, hook, "init", c.name, "--template", tplSquash, "-P", c.lxcpath)
			if err == nil || !strings.Contains(out, "already exists") {
				t.Fatalf("init over an existing container: %v %s", err, out)
			}
			after, _ := os.ReadFile(filepath.Join(c.dir, "config"))
			if string(before) != string(after) {
				t.Fatal("refused init changed the config")
			}
		})
	}
}

type statusJSON struct {
	Containers []struct {
		Name      string   `json:"name"`
		State     string   `json:"state"`
		Hook      string   `json:"hook"`
		Config    string   `json:"config"`
		Templates []string `json:"templates"`
		Layer     struct {
			Kind     string `json:"kind"`
			Path     string `json:"path"`
			Unlinked bool   `json:"unlinked"`
		} `json:"layer"`
		Ephemeral      bool  `json:"ephemeral"`
		CapBytes       int64 `json:"cap_bytes"`
		UsedBytes      int64 `json:"used_bytes"`
		AllocatedBytes int64 `json:"allocated_bytes"`
		Loops          []struct {
			Device  string `json:"device"`
			Role    string `json:"role"`
			Backing string `json:"backing"`
			Shared  bool   `json:"shared"`
		} `json:"loop_devices"`
		Holders string `json:"holders"`
		Error   string `json:"error"`
	} `json:"containers"`
}

func status(t *testing.T, c *ctr) statusJSON {
	t.Helper()
	out, err := admin(t, "lxc-hook-loopimg", "status", c.name, "--json", "-P", c.lxcpath)
	if err != nil {
		t.Fatalf("status: %v %s", err, out)
	}
	var s statusJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	if len(s.Containers) != 1 || s.Containers[0].Name != c.name {
		t.Fatalf("status of %s: %s", c.name, out)
	}
	return s
}

// status --json for a running, a stopped and a pinned container, field by
// field; then release shows the holder, and --kill frees everything.
func TestStatusAndRelease(t *testing.T) {
	requireEnv(t)
	c := initCtr(t, "lxc-hook-loopimg", "--size", "64M")
	img := filepath.Join(c.dir, "layer.img")

	c.mustStart()
	c.mustSh("dd if=/dev/zero of=/root/ten bs=1M count=10 && sync")
	s := status(t, c).Containers[0]
	if s.State != "RUNNING" || s.Hook != "lxc-hook-loopimg" || s.Config != filepath.Join(c.dir, "config") {
		t.Fatalf("running: %+v", s)
	}
	if len(s.Templates) != 1 || s.Templates[0] != tplSquash || s.Layer.Kind != "image" || s.Layer.Path != img {
		t.Fatalf("running: templates/layer %+v", s)
	}
	if s.CapBytes != 64<<20 || s.UsedBytes < 10<<20 || s.UsedBytes > 40<<20 || s.AllocatedBytes < 10<<20 {
		t.Fatalf("running: cap %d used %d allocated %d", s.CapBytes, s.UsedBytes, s.AllocatedBytes)
	}
	roles := map[string]int{}
	for _, l := range s.Loops {
		roles[l.Role]++
		if !strings.HasPrefix(l.Device, "/dev/loop") {
			t.Fatalf("device %q", l.Device)
		}
		if l.Shared {
			t.Fatalf("the only container running from the template: its device is not shared: %+v", l)
		}
	}
	if roles["template"] != 1 || roles["image"] != 1 || s.Holders != "" {
		t.Fatalf("running: loops %+v holders %q", s.Loops, s.Holders)
	}
	// shared: another running container uses the same template device
	// (counted, from the runs' records and their live mount namespaces: a
	// process of the container in a mount namespace of its own is not
	// another user).
	sharedOf := func(s statusJSON) (tpl, img int) {
		for _, l := range s.Containers[0].Loops {
			if l.Shared && l.Role == "template" {
				tpl++
			} else if l.Shared {
				img++
			}
		}
		return
	}
	c.mustSh(`busybox unshare -m sleep 600 >/dev/null 2>&1 & p=$!
while [ "$(readlink /proc/$p/ns/mnt)" = "$(readlink /proc/$$/ns/mnt)" ]; do :; done
test -n "$(readlink /proc/$p/ns/mnt)"`)
	if tpl, _ := sharedOf(status(t, c)); tpl != 0 {
		t.Fatal("a process of the container in a mount namespace of its own made the template device shared")
	}
	c2 := initCtr(t, "lxc-hook-loopimg", "--size", "48M")
	c2.mustStart()
	if tpl, img := sharedOf(status(t, c)); tpl != 1 || img != 0 {
		t.Fatalf("two containers on one template: shared template devices %d (want 1), image devices %d (want 0)", tpl, img)
	}
	if tpl, _ := sharedOf(status(t, c2)); tpl != 1 {
		t.Fatal("the second container's template device is not shared")
	}
	c2.stop(true)
	if tpl, _ := sharedOf(status(t, c)); tpl != 0 {
		t.Fatal("the template device is still shared after the other container stopped")
	}

	holder, who := holdNamespace(t, c)
	c.stop(false)

	s = status(t, c).Containers[0]
	if s.State != "STOPPED" || len(s.Loops) != 2 || !strings.Contains(s.Holders, who) {
		t.Fatalf("pinned: %+v", s)
	}
	out, err := admin(t, "lxc-hook-loopimg", "release", c.name, "-P", c.lxcpath)
	if err != nil || !strings.Contains(out, who) {
		t.Fatalf("release without --kill: %v %s", err, out)
	}
	if len(status(t, c).Containers[0].Loops) != 2 {
		t.Fatal("release without --kill changed something")
	}
	out, err = admin(t, "lxc-hook-loopimg", "release", c.name, "--kill", "-P", c.lxcpath)
	if err != nil || !strings.Contains(out, "killed pid "+strconv.Itoa(holder.Process.Pid)) {
		t.Fatalf("release --kill: %v %s", err, out)
	}
	holder.Wait()
	assertNoLoops(t, workRoot, "after release --kill")
	fsckClean(t, img, "after release --kill")

	s = status(t, c).Containers[0]
	if s.State != "STOPPED" || len(s.Loops) != 0 || s.Holders != "" || s.CapBytes != 64<<20 {
		t.Fatalf("stopped: %+v", s)
	}

	c.mustStart()
	if out, err := admin(t, "lxc-hook-loopimg", "release", c.name, "-P", c.lxcpath); err == nil || !strings.Contains(out, "only on stopped") {
		t.Fatalf("release of a running container: %v %s", err, out)
	}
	c.stop(true)
}

// resize of a running container: df inside shows the new size without a
// restart, data intact, fsck clean after stop; shrink refused; offline
// resize works too.
func TestResize(t *testing.T) {
	requireEnv(t)
	c := initCtr(t, "lxc-hook-loopimg", "--size", "48M")
	img := filepath.Join(c.dir, "layer.img")
	c.mustStart()
	c.mustSh("echo keep > /root/k && sync")
	df := func() int {
		kb, _ := strconv.Atoi(strings.Fields(c.mustSh("df -k / | tail -1"))[1])
		return kb
	}
	before := df()
	out, err := admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "128M", "-P", c.lxcpath)
	if hasCap(24) { // CAP_SYS_RESOURCE: ext4's online resize needs it
		if err != nil {
			t.Fatalf("online resize: %v %s", err, out)
		}
		if after := df(); after < 110*1024 || after <= before {
			t.Fatalf("df inside after online resize: %d KiB (before %d)", after, before)
		}
	} else {
		// This sandbox withholds CAP_SYS_RESOURCE even from root: the
		// kernel would refuse the online resize. The refusal must say so
		// before changing anything, and resize after a stop does the job.
		t.Log("no CAP_SYS_RESOURCE here: online growth of the filesystem cannot run; checking the refusal and the offline resize instead")
		if err == nil || !strings.Contains(out, "CAP_SYS_RESOURCE") || !strings.Contains(out, "nothing was changed") {
			t.Fatalf("online resize without CAP_SYS_RESOURCE: %v %s", err, out)
		}
		if n := apparentSize(t, img); n != 48<<20 {
			t.Fatalf("a refused resize changed the image: %d bytes", n)
		}
		c.stop(false)
		if out, err := admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "128M", "-P", c.lxcpath); err != nil {
			t.Fatalf("offline resize: %v %s", err, out)
		}
		c.mustStart()
		if after := df(); after < 110*1024 {
			t.Fatalf("df after the restart that finishes the resize: %d KiB", after)
		}
	}
	if got := c.mustSh("cat /root/k"); got != "keep\n" {
		t.Fatalf("data after resize: %q", got)
	}
	if n := apparentSize(t, img); n != 128<<20 {
		t.Fatalf("image is %d bytes", n)
	}
	cfg, _ := os.ReadFile(filepath.Join(c.dir, "config"))
	if !strings.Contains(string(cfg), "--size 128M") || strings.Contains(string(cfg), "--size 48M") {
		t.Fatalf("hook lines not updated:\n%s", cfg)
	}
	if out, err := admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "64M", "-P", c.lxcpath); err == nil || !strings.Contains(out, "shrinking") {
		t.Fatalf("shrink: %v %s", err, out)
	}
	c.stop(false)
	fsckClean(t, img, "after the online resize")
	assertNoLoops(t, workRoot, "after stop")

	if out, err := admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "160M", "-P", c.lxcpath); err != nil {
		t.Fatalf("offline resize: %v %s", err, out)
	}
	fsckClean(t, img, "after the offline resize")
	c.mustStart()
	if kb := df(); kb < 140*1024 {
		t.Fatalf("df after offline resize: %d KiB", kb)
	}
	c.stop(true)
	if errs := c.hookLogLines("WARN"); len(errs) > 0 {
		t.Fatalf("warnings after resize (the --size on the hook lines should match): %v", errs)
	}
}

// hasCap reports whether this process has capability bit n in its
// effective set.
func hasCap(n uint) bool {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<n) != 0
		}
	}
	return false
}

// The package builds with the standard tools and installs into a scratch
// root: the binaries in /usr/bin run through the symlinks LXC configs name
// and report the package's version; man pages, copyright and a changelog
// whose newest entry is that version are there; a purge removes them all.
// (.ci/run runs lintian on the package.)
func TestDebianPackage(t *testing.T) {
	requireEnv(t)
	needTools(t, "apt-get install make dpkg", "make", "dpkg-deb", "dpkg")
	deb := buildPackage(t, repoRoot(), "MAINTAINER=Test Builder <test@lxc-hooks.example.org>")
	field := func(name string) string {
		return strings.TrimSpace(mustExec(t, "dpkg-deb", "-f", deb, name))
	}
	if d := field("Depends"); !strings.Contains(d, "lxc") || !strings.Contains(d, "e2fsprogs") {
		t.Fatalf("Depends: %s", d)
	}
	if m := field("Maintainer"); m != "Test Builder <test@lxc-hooks.example.org>" {
		t.Fatalf("Maintainer: %q, want the one make deb was given", m)
	}
	version := field("Version")
	root := scratchRoot(t, testDir(t))
	dpkgInstall(t, root, deb)
	for _, b := range []string{"lxc-hook-overlay", "lxc-hook-loopimg", "lxc-hook-aufs"} {
		bin := filepath.Join(root, "usr/bin", b)
		if fi, err := os.Lstat(bin); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v %v", bin, fi, err)
		}
		hook := filepath.Join(root, "usr/share/lxc/hooks", b)
		if l, err := os.Readlink(hook); err != nil || l != "../../../bin/"+b {
			t.Fatalf("%s links to %q (%v)", hook, l, err)
		}
		v, err := exec.Command(hook, "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(v), b+" "+version+" (commit ") {
			t.Fatalf("%s --version: %v %q, want version %s and the commit", hook, err, v, version)
		}
		if _, err := os.Stat(filepath.Join(root, "usr/share/man/man1", b+".1.gz")); err != nil {
			t.Fatalf("man page of %s: %v", b, err)
		}
		// lxc-create -t hooks-X finds the binary as LXC's template.
		tpl := filepath.Join(root, "usr/share/lxc/templates", "lxc-hooks-"+strings.TrimPrefix(b, "lxc-hook-"))
		if l, err := os.Readlink(tpl); err != nil || l != "../../../bin/"+b {
			t.Fatalf("%s links to %q (%v)", tpl, l, err)
		}
		if h, err := exec.Command(tpl, "-h").CombinedOutput(); err != nil || !strings.Contains(string(h), "lxc-create -n NAME -t hooks-"+strings.TrimPrefix(b, "lxc-hook-")) {
			t.Fatalf("%s -h: %v %s", tpl, err, h)
		}
		// The bash completion is the binary's own.
		comp, err := os.ReadFile(filepath.Join(root, "usr/share/bash-completion/completions", b))
		own, _ := exec.Command(filepath.Join(root, "usr/bin", b), "completion", "bash").Output()
		if err != nil || len(comp) == 0 || string(comp) != string(own) {
			t.Fatalf("bash completion of %s: %v (%d bytes; the binary writes %d)", b, err, len(comp), len(own))
		}
	}
	doc := filepath.Join(root, "usr/share/doc/lxc-hooks")
	if c, err := os.ReadFile(filepath.Join(doc, "copyright")); err != nil || !strings.HasPrefix(string(c), "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/") {
		t.Fatalf("copyright: %v", err)
	}
	f, err := os.Open(filepath.Join(doc, "changelog.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("changelog.gz: %v", err)
	}
	top, _ := bufio.NewReader(z).ReadString('\n')
	if !strings.HasPrefix(top, "lxc-hooks ("+version+") ") {
		t.Fatalf("changelog's newest entry %q, want version %s", top, version)
	}
	// Purged, it leaves none of its files (LXC's own hook directory stays).
	mustExec(t, "dpkg", "--root="+root, "--force-script-chrootless", "--purge", "lxc-hooks")
	for _, p := range []string{"usr/bin/lxc-hook-loopimg", "usr/share/lxc/hooks/lxc-hook-loopimg", "usr/share/doc/lxc-hooks", "usr/share/man/man1/lxc-hook-loopimg.1.gz", "usr/share/lxc/templates/lxc-hooks-loopimg", "usr/share/bash-completion/completions/lxc-hook-loopimg"} {
		if exists(filepath.Join(root, p)) {
			t.Fatalf("%s is left after dpkg --purge", p)
		}
	}
}

// lxc-hook-aufs init writes the AuFS hook lines where the kernel has
// AuFS; where it has none, init is refused (every start would be) and
// nothing is written, and with --fallback=overlay the lines carry the
// fallback and the container starts with an overlayfs layer.
func TestInitAufs(t *testing.T) {
	requireEnv(t)
	if kernelHasAufs() {
		c := initCtr(t, "lxc-hook-aufs")
		cfg, _ := os.ReadFile(filepath.Join(c.dir, "config"))
		if !strings.Contains(string(cfg), "lxc.hook.pre-mount = "+filepath.Join(binDir, "lxc-hook-aufs")+" --config "+filepath.Join(c.dir, "config")+" --lower "+tplSquash) {
			t.Fatalf("config:\n%s", cfg)
		}
		c.mustStart()
		c.stop(true)
		return
	}
	lxcpath := filepath.Join(workRoot, "lxc")
	name := uniqueName("aufs")
	out, err := admin(t, "lxc-hook-aufs", "init", name, "--template", tplSquash, "-P", lxcpath, "--default-config", "/dev/null")
	if err == nil || !strings.Contains(out, "this kernel has no AuFS") || !strings.Contains(out, "--fallback=overlay") || !strings.Contains(out, "nothing was written") {
		t.Fatalf("init on a kernel without AuFS: %v %q; want a refusal naming --fallback=overlay", err, out)
	}
	if exists(filepath.Join(lxcpath, name)) {
		t.Fatal("the refused init left the container's directory")
	}
	c := initCtr(t, "lxc-hook-aufs", "--fallback=overlay")
	cfg, _ := os.ReadFile(filepath.Join(c.dir, "config"))
	for _, key := range []string{"pre-mount", "stop", "clone"} {
		if !strings.Contains(string(cfg), "lxc.hook."+key+" = "+filepath.Join(binDir, "lxc-hook-aufs")+" --config "+filepath.Join(c.dir, "config")+" --lower "+tplSquash+" --fallback=overlay\n") {
			t.Fatalf("lxc.hook.%s without the fallback:\n%s", key, cfg)
		}
	}
	c.mustStart()
	c.mustSh("echo kept > /root/k && sync")
	c.stop(false)
	c.mustStart()
	if got := c.mustSh("cat /root/k"); got != "kept\n" {
		t.Fatalf("after a restart: %q", got)
	}
	c.stop(true)
	assertNoLoops(t, workRoot, "after the fallback container stopped")
}

// By hand: a mistyped command is named, with the one meant and the list,
// exit 2 (not a hook-argument error); each binary's --help lists exactly
// its commands and documents only the flags it takes; each man page has a
// section for every command --help lists.
func TestCommandLineByHand(t *testing.T) {
	requireEnv(t)
	out, errOut, err := adminSplit(t, "lxc-hook-overlay", "stauts", "web1")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || out != "" || strings.Count(errOut, "\n") != 1 ||
		!strings.HasPrefix(errOut, "lxc-hook-overlay: unknown command stauts; did you mean status? (commands: init, status, release, copy, template, convert, migrate, lxc-template, completion, manpage;") {
		t.Errorf("lxc-hook-overlay stauts: %v, stdout %q, stderr %q", err, out, errOut)
	}
	if strings.Contains(errOut, "lxc.hook.version") {
		t.Errorf("a mistyped command taken for hook arguments: %q", errOut)
	}
	_, errOut, err = adminSplit(t, "lxc-hook-overlay", "resize", "web1", "--size", "4G")
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(errOut, "only lxc-hook-loopimg's image layers have a cap") {
		t.Errorf("lxc-hook-overlay resize: %v %q", err, errOut)
	}
	want := map[string]string{
		"lxc-hook-overlay": "init|status|release|copy|template|convert|migrate|lxc-template|completion|manpage",
		"lxc-hook-loopimg": "init|status|resize|release|copy|template|convert|migrate|lxc-template|completion|manpage",
		"lxc-hook-aufs":    "init|status|release|copy|template|convert|migrate|lxc-template|completion|manpage",
	}
	for hook, cmds := range want {
		help, _, err := adminSplit(t, hook, "--help")
		if err != nil || !strings.Contains(help, "\nRun by hand: "+hook+" "+cmds+" ... (each with --help)\n") {
			t.Errorf("%s --help: %v, want \"Run by hand: %s %s ...\":\n%s", hook, err, hook, cmds, help)
		}
		page, _, err := adminSplit(t, hook, "manpage")
		if err != nil {
			t.Fatalf("%s manpage: %v", hook, err)
		}
		for _, c := range strings.Split(cmds, "|") {
			if !strings.Contains(page, "\n.SS "+c+"\n.nf\nUsage: "+strings.ReplaceAll(hook+" "+c, "-", `\-`)) {
				t.Errorf("%s's man page has no section for %s", hook, c)
			}
		}
		if hook != "lxc-hook-loopimg" && strings.Contains(page, ".SS resize") {
			t.Errorf("%s's man page documents resize, which it does not have", hook)
		}
	}
	help, _, _ := adminSplit(t, "lxc-hook-aufs", "--help")
	initHelp, _, _ := adminSplit(t, "lxc-hook-aufs", "init", "--help")
	for _, f := range []string{"-ephemeral", "-size"} {
		if strings.Contains(help, f) || strings.Contains(initHelp, f) {
			t.Errorf("lxc-hook-aufs documents %s, which it refuses:\n%s\n%s", f, help, initHelp)
		}
	}
}

// status of a running ephemeral image: its path as created, not
// "... (deleted)", marked unlinked; its size from the loop device; what it
// holds on the host from its filesystem, not 0.
func TestStatusEphemeralImage(t *testing.T) {
	requireEnv(t)
	c := initCtr(t, "lxc-hook-loopimg", "--ephemeral", "--size", "48M")
	c.mustStart()
	c.mustSh("dd if=/dev/urandom of=/root/ten bs=1M count=10 2>/dev/null && sync")
	e := status(t, c).Containers[0]
	if !e.Ephemeral || e.Layer.Kind != "image" || !e.Layer.Unlinked || strings.Contains(e.Layer.Path, "deleted") ||
		!strings.HasPrefix(e.Layer.Path, filepath.Join(c.dir, ".layer.img.ephemeral.")) {
		t.Fatalf("running ephemeral image: %+v", e)
	}
	if e.CapBytes != 48<<20 || e.UsedBytes < 10<<20 || e.AllocatedBytes < 10<<20 || e.AllocatedBytes > 48<<20 {
		t.Fatalf("running ephemeral image: cap %d used %d allocated %d", e.CapBytes, e.UsedBytes, e.AllocatedBytes)
	}
	images := 0
	for _, l := range e.Loops {
		if l.Role == "image" {
			images++
			if l.Backing != e.Layer.Path {
				t.Errorf("image device %s backing %q, want %q", l.Device, l.Backing, e.Layer.Path)
			}
		}
	}
	if images != 1 {
		t.Errorf("loop devices %+v: want one image device", e.Loops)
	}
	out, err := admin(t, "lxc-hook-loopimg", "status", c.name, "-P", c.lxcpath)
	if err != nil || strings.Contains(out, "(deleted)") || !strings.Contains(out, "unlinked once mounted") {
		t.Errorf("status text: %v\n%s", err, out)
	}
	c.stop(false)
	e = status(t, c).Containers[0]
	if e.Layer.Path != "" || e.Layer.Unlinked || e.AllocatedBytes != 0 {
		t.Errorf("stopped ephemeral image: %+v", e)
	}
}
