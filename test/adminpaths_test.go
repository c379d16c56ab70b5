package test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// initAt runs "HOOK init" with the given lxcpath and template and returns
// the container, its LXC log in a file beside its config.
func initAt(t *testing.T, hook, lxcpath, tpl string, extra ...string) *ctr {
	t.Helper()
	if err := os.MkdirAll(lxcpath, 0o755); err != nil {
		t.Fatal(err)
	}
	defaults := filepath.Join(workRoot, "default.conf")
	os.WriteFile(defaults, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"), 0o644)
	name := uniqueName("init")
	args := append([]string{"init", name, "--template", tpl, "-P", lxcpath, "--default-config", defaults}, extra...)
	if out, err := admin(t, hook, args...); err != nil {
		t.Fatalf("%s init: %v\n%s", hook, err, out)
	}
	c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name), logFile: filepath.Join(lxcpath, name, name+".log")}
	// The test wants the LXC log in a file it can read.
	f, _ := os.OpenFile(filepath.Join(c.dir, "config"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("lxc.log.file = " + c.logFile + "\nlxc.log.level = INFO\n")
	f.Close()
	t.Cleanup(func() {
		if c.state() != "STOPPED" {
			exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
		}
		if t.Failed() {
			b, _ := os.ReadFile(c.logFile)
			t.Logf("LXC log of %s:\n%s", c.name, lastLines(string(b), 30))
		}
	})
	return c
}

func (c *ctr) dfKB() int {
	c.t.Helper()
	kb, _ := strconv.Atoi(strings.Fields(c.mustSh("df -k / | tail -1"))[1])
	return kb
}

func configHas(t *testing.T, c *ctr, want string) bool {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(c.dir, "config"))
	return strings.Contains(string(b), want)
}

// A template and an lxcpath with blanks, a quote and a "$(touch ...)" in
// their names: init quotes them, so the container starts, stops, shows in
// status (text and JSON, unlisted and by name) and resizes, and the
// command substitution never runs.
func TestPathsWithShellMetacharacters(t *testing.T) {
	requireEnv(t)
	d := testDir(t)
	pwned := filepath.Join(d, "pwned")
	lxcpath := filepath.Join(d, "my lxc's", "$(touch "+pwned+")")
	tplDir := filepath.Join(d, "my templates")
	os.MkdirAll(tplDir, 0o755)
	tpl := filepath.Join(tplDir, `it's "a" template.sqfs`)
	copyFile(t, tplSquash, tpl)

	c := initAt(t, "lxc-hook-loopimg", lxcpath, tpl, "--size", "48M")
	img := filepath.Join(c.dir, "layer.img")
	c.mustStart()
	c.mustSh("echo kept > /root/k && sync")

	out, err := admin(t, "lxc-hook-loopimg", "status", "-P", lxcpath)
	if err != nil || !strings.Contains(out, c.name+": RUNNING") || !strings.Contains(out, "templates: "+tpl) || !strings.Contains(out, "layer:     image "+img) {
		t.Fatalf("status: %v\n%s", err, out)
	}
	out, err = admin(t, "lxc-hook-loopimg", "status", "--json", "-P", lxcpath)
	var s statusJSON
	if err != nil || json.Unmarshal([]byte(out), &s) != nil || len(s.Containers) != 1 {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if e := s.Containers[0]; e.Name != c.name || e.Templates[0] != tpl || e.Layer.Path != img || e.Config != filepath.Join(c.dir, "config") || len(e.Loops) != 2 {
		t.Fatalf("status --json: %+v", e)
	}
	// A container whose hook line sh would expand: status without names
	// lists it with the reason instead of leaving it out.
	broken := filepath.Join(lxcpath, "broken")
	os.Mkdir(broken, 0o755)
	os.WriteFile(filepath.Join(broken, "config"), []byte("lxc.hook.pre-mount = "+filepath.Join(binDir, "lxc-hook-loopimg")+" --image $HOME/x.img\n"), 0o644)
	// Listed, or named: every container gets its entry, the broken one
	// with its error; the exit status says one failed, stderr names it.
	for _, args := range [][]string{{"status", "--json", "-P", lxcpath}, {"status", "broken", c.name, "--json", "-P", lxcpath}} {
		out, errOut, err := adminSplit(t, "lxc-hook-loopimg", args...)
		s = statusJSON{}
		if jerr := json.Unmarshal([]byte(out), &s); jerr != nil || len(s.Containers) != 2 || s.Containers[0].Name != "broken" ||
			!strings.Contains(s.Containers[0].Error, "--image $HOME/x.img") || !strings.Contains(s.Containers[0].Error, "expand") || s.Containers[1].Error != "" || s.Containers[1].State != "RUNNING" {
			t.Fatalf("%v with a broken container: %v %v\n%s", args, err, jerr, out)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errOut, "1 of 2 containers could not be read: broken") {
			t.Fatalf("%v with a broken container: exit %v, stderr %q; want 1 and the name", args, err, errOut)
		}
	}
	os.Remove(filepath.Join(broken, "config"))
	os.Remove(broken)
	// Online growth needs CAP_SYS_RESOURCE; offline works everywhere.
	c.stop(false)
	if out, err := admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "64M", "-P", lxcpath); err != nil || !strings.Contains(out, "grown from 48M to 64M") {
		t.Fatalf("resize: %v %s", err, out)
	}
	c.mustStart()
	if got := c.mustSh("cat /root/k"); got != "kept\n" {
		t.Fatalf("data: %q", got)
	}
	if kb := c.dfKB(); kb < 52*1024 {
		t.Fatalf("df after resize: %d KiB", kb)
	}
	c.stop(false)
	if exists(pwned) {
		t.Fatal("the $(touch ...) in the path was executed")
	}
	if w := c.hookLogLines("WARN"); len(w) > 0 {
		t.Fatalf("warnings: %v", w)
	}
	assertNoLoops(t, d, "after stop")
	fsckClean(t, img, "after stop")
}

// resize writes a hook line the hooks read back: a line written with two
// blanks before the size, and a size with a blank inside, refused.
func TestResizeRewritesHookLinesTheHooksParse(t *testing.T) {
	requireEnv(t)
	c := initCtr(t, "lxc-hook-loopimg", "--size", "32M")
	cfg := filepath.Join(c.dir, "config")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.ReplaceAll(string(b), "--size 32M", "--size  32M")), 0o640)
	if out, err := admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "96 M", "-P", c.lxcpath); err == nil || !strings.Contains(out, "blank inside") {
		t.Fatalf(`resize --size "96 M": %v %s`, err, out)
	}
	if out, err := admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "48M", "-P", c.lxcpath); err != nil {
		t.Fatalf("resize: %v %s", err, out)
	}
	b, _ = os.ReadFile(cfg)
	hooks := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "lxc.hook.") {
			hooks++
			if !strings.HasSuffix(l, " --size 48M") {
				t.Fatalf("hook line %q", l)
			}
		}
	}
	if hooks < 3 || strings.Contains(string(b), "32M") {
		t.Fatalf("config:\n%s", b)
	}
	if fi, _ := os.Stat(cfg); fi.Mode().Perm() != 0o640 {
		t.Fatalf("config mode %v", fi.Mode())
	}
	c.mustStart()
	if kb := c.dfKB(); kb < 38*1024 {
		t.Fatalf("df: %d KiB", kb)
	}
	c.stop(false)
	if e := c.hookLogLines("ERROR"); len(e) > 0 {
		t.Fatalf("errors: %v", e)
	}
	if w := c.hookLogLines("WARN"); len(w) > 0 {
		t.Fatalf("warnings: %v", w)
	}
}

// A resize that cannot be done changes nothing and says what is true:
// the image on a small, nearly full host filesystem (a tmpfs) cannot be
// preallocated to 1G; the config keeps its --size, the next start works,
// the data is there.
func TestResizeOnFullHostChangesNothing(t *testing.T) {
	requireEnv(t)
	d := testDir(t)
	small := filepath.Join(d, "small")
	os.Mkdir(small, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=100M", "lxc-hooks-test", small).CombinedOutput(); err != nil {
		t.Fatalf("cannot mount a tmpfs for the small host filesystem: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", small).Run() })
	img := filepath.Join(small, "l.img")
	c := loopimgCtr(t, d, img, "--size", "48M", "--preallocate")
	cfg := filepath.Join(c.dir, "config")
	c.mustStart()
	c.mustSh("echo kept > /root/k && sync")
	before, _ := os.ReadFile(cfg)

	// Running: online growth fails (fallocate: no space), or, without
	// CAP_SYS_RESOURCE, is refused before anything is touched.
	out, err := admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "1G", "-P", c.lxcpath)
	want := "the config was not changed: the image file is 48M and its filesystem 48M"
	if !hasCap(24) {
		want = "needs CAP_SYS_RESOURCE, which this process does not have; nothing was changed"
	}
	if err == nil || !strings.Contains(out, want) || strings.Contains(out, "1G now") {
		t.Fatalf("online resize on a full host: %v %s", err, out)
	}
	if after, _ := os.ReadFile(cfg); string(after) != string(before) {
		t.Fatalf("config changed:\n%s", after)
	}
	if n := apparentSize(t, img); n != 48<<20 {
		t.Fatalf("image is %d bytes", n)
	}
	c.stop(false)

	// Stopped: the offline growth fails in fallocate; same truth.
	out, err = admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "1G", "-P", c.lxcpath)
	if err == nil || !strings.Contains(out, "the config was not changed: the image file is 48M and its filesystem 48M") || !strings.Contains(out, "fallocate") {
		t.Fatalf("offline resize on a full host: %v %s", err, out)
	}
	if after, _ := os.ReadFile(cfg); string(after) != string(before) {
		t.Fatalf("config changed:\n%s", after)
	}
	c.mustStart()
	if got := c.mustSh("cat /root/k"); got != "kept\n" {
		t.Fatalf("data: %q", got)
	}
	c.stop(false)
	assertNoLoops(t, d, "after stop")
	fsckClean(t, img, "after stop")
}

// A resize that failed online leaves a grown file around the old
// filesystem (what the kernel's EPERM without CAP_SYS_RESOURCE left
// before): a retry must not answer "already" while df inside shows the old
// size; it finishes (online with the capability, else offline after a
// stop), and only then writes --size.
func TestResizeRetryAfterFailedOnline(t *testing.T) {
	requireEnv(t)
	c := initCtr(t, "lxc-hook-loopimg", "--size", "48M")
	img := filepath.Join(c.dir, "layer.img")
	c.mustStart()
	c.mustSh("echo kept > /root/k && sync")
	if err := os.Truncate(img, 96<<20); err != nil { // the half-done online resize
		t.Fatal(err)
	}
	out, err := admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "96M", "-P", c.lxcpath)
	if strings.Contains(out, "already") {
		t.Fatalf("retry answered %q while the filesystem is 48M", out)
	}
	if hasCap(24) {
		if err != nil || c.dfKB() < 80*1024 {
			t.Fatalf("online retry: %v %s (df %d KiB)", err, out, c.dfKB())
		}
	} else {
		if err == nil || !strings.Contains(out, "CAP_SYS_RESOURCE") || !strings.Contains(out, "lxc-stop -n "+c.name) {
			t.Fatalf("retry without CAP_SYS_RESOURCE: %v %s", err, out)
		}
		if kb := c.dfKB(); kb > 48*1024 {
			t.Fatalf("df %d KiB", kb)
		}
		if !configHas(t, c, "--size 48M") {
			t.Fatal("config rewritten by a resize that did not happen")
		}
		c.stop(false)
		out, err = admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "96M", "-P", c.lxcpath)
		if err != nil || !strings.Contains(out, "grown from 48M to 96M") {
			t.Fatalf("offline retry: %v %s", err, out)
		}
		c.mustStart()
	}
	if !configHas(t, c, "--size 96M") || configHas(t, c, "--size 48M") {
		t.Fatal("config not updated after the resize worked")
	}
	if kb := c.dfKB(); kb < 80*1024 {
		t.Fatalf("df after the resize: %d KiB", kb)
	}
	if got := c.mustSh("cat /root/k"); got != "kept\n" {
		t.Fatalf("data: %q", got)
	}
	out, err = admin(t, "lxc-hook-loopimg", "resize", c.name, "--size", "96M", "-P", c.lxcpath)
	if err != nil || !strings.Contains(out, "already 96M") {
		t.Fatalf("resize to the size it has: %v %s", err, out)
	}
	c.stop(false)
	fsckClean(t, img, "after stop")
	if w := c.hookLogLines("WARN"); len(w) > 0 {
		t.Fatalf("warnings: %v", w)
	}
}

// init on a host without the bridge the default config names warns, with
// the fix; with the bridge there, no warning.
func TestInitWarnsAboutMissingBridge(t *testing.T) {
	requireEnv(t)
	d := testDir(t)
	def := filepath.Join(d, "default.conf")
	os.WriteFile(def, []byte("lxc.net.0.type = veth\nlxc.net.0.link = nobr-hardadm0\nlxc.net.0.flags = up\n"), 0o644)
	out, err := admin(t, "lxc-hook-overlay", "init", uniqueName("br"), "--template", tplSquash, "-P", filepath.Join(d, "lxc"), "--default-config", def)
	if err != nil || !strings.Contains(out, "warning: lxc.net.0.link = nobr-hardadm0") || !strings.Contains(out, "bridge interface doesn't exist") || !strings.Contains(out, "--default-config /dev/null") {
		t.Fatalf("init: %v %s", err, out)
	}
	os.WriteFile(def, []byte("lxc.net.0.type = veth\nlxc.net.0.link = lo\n"), 0o644)
	out, err = admin(t, "lxc-hook-overlay", "init", uniqueName("br"), "--template", tplSquash, "-P", filepath.Join(d, "lxc"), "--default-config", def)
	if err != nil || strings.Contains(out, "lxc.net.0.link") {
		t.Fatalf("init with the link present: %v %s", err, out)
	}
}
