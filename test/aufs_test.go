package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func kernelHasAufs() bool {
	b, _ := os.ReadFile("/proc/filesystems")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(strings.TrimPrefix(line, "nodev")) == "aufs" {
			return true
		}
	}
	return false
}

// Where the kernel has no AuFS, the start is refused with a line that says
// so and names the alternatives, and nothing is left attached.
func TestAufsRefusedWithoutAufs(t *testing.T) {
	requireEnv(t)
	if kernelHasAufs() {
		t.Skip("this kernel has AuFS: the refusal cannot happen here")
	}
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	c := newCtr(t, ctrOpts{hook: "lxc-hook-aufs", args: []string{"--lower", tpl, "--upper", filepath.Join(dir, "layer")}})
	if err := c.start(); err == nil {
		c.stop(true)
		t.Fatal("started without AuFS")
	}
	errs := c.hookLogLines("ERROR")
	if len(errs) == 0 || !strings.Contains(errs[0], "this kernel has no AuFS") || !strings.Contains(errs[0], "--fallback=overlay") {
		t.Fatalf("refusal: %v", errs)
	}
	assertNoLoops(t, dir, "after the refused start")
}

// --fallback=overlay: the container starts with overlayfs, a warning says
// so, writes persist over a restart, nothing is left after stop.
func TestAufsFallbackOverlay(t *testing.T) {
	requireEnv(t)
	if kernelHasAufs() {
		t.Skip("this kernel has AuFS: the fallback is not used here")
	}
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	upper := filepath.Join(dir, "layer")
	c := newCtr(t, ctrOpts{hook: "lxc-hook-aufs", args: []string{"--lower", tpl, "--upper", upper, "--fallback=overlay"}})
	c.mustStart()
	c.mustSh("echo fallback > /root/f && rm /etc/from-template && sync")
	c.stop(false)
	assertNoLoops(t, dir, "after stop")
	if w := strings.Join(c.hookLogLines("WARN"), "\n"); !strings.Contains(w, "no AuFS: mounting the layer with overlayfs") {
		t.Fatalf("no fallback warning: %q", w)
	}
	c.mustStart()
	if got := c.mustSh("cat /root/f"); got != "fallback\n" {
		t.Fatalf("after restart: %q", got)
	}
	if _, err := c.sh("cat /etc/from-template"); err == nil {
		t.Fatal("a deleted file came back")
	}
	c.stop(true)
	assertNoLoops(t, dir, "after the second stop")
	if exists(filepath.Join(upper, ".aufs.xino")) {
		t.Fatal("xino file left")
	}
}

// A layer written by overlayfs is refused by lxc-hook-aufs without the
// fallback (its whiteouts would not be understood), on any kernel.
func TestAufsRefusesOverlayLayer(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	upper := filepath.Join(dir, "layer")
	o := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tplDir, "--upper", upper}})
	o.mustStart()
	o.mustSh("rm /etc/from-template")
	o.stop(false)
	a := newCtr(t, ctrOpts{hook: "lxc-hook-aufs", args: []string{"--lower", tplDir, "--upper", upper}})
	if err := a.start(); err == nil {
		a.stop(true)
		t.Fatal("aufs mounted an overlay layer")
	}
	if errs := a.hookLogLines("ERROR"); len(errs) == 0 || !strings.Contains(errs[0], "was written by overlay and cannot be mounted with aufs") {
		t.Fatalf("refusal: %v", errs)
	}
}

// The reverse: a layer written by AuFS (its marker, or, for an unmarked
// layer, AuFS's own .wh..wh.aufs) is refused by lxc-hook-overlay.
func TestOverlayRefusesAufsLayer(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	marked := filepath.Join(dir, "marked")
	os.MkdirAll(filepath.Join(marked, "upper"), 0o755)
	os.WriteFile(filepath.Join(marked, "lxc-hook-layer"), []byte("aufs\n"), 0o600)
	unmarked := filepath.Join(dir, "unmarked")
	os.MkdirAll(filepath.Join(unmarked, "upper"), 0o755)
	os.WriteFile(filepath.Join(unmarked, "upper", ".wh..wh.aufs"), nil, 0o600)
	for layerDir, want := range map[string]string{
		marked:   "was written by aufs and cannot be mounted with overlay",
		unmarked: "holds AuFS whiteouts",
	} {
		c := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tplDir, "--upper", layerDir}})
		if err := c.start(); err == nil {
			c.stop(true)
			t.Fatalf("overlay mounted the aufs layer %s", layerDir)
		}
		if errs := c.hookLogLines("ERROR"); len(errs) == 0 || !strings.Contains(errs[0], want) {
			t.Fatalf("%s: want %q, got %v", layerDir, want, errs)
		}
	}
}

// On a kernel with AuFS: the real thing.
func TestAufsReal(t *testing.T) {
	requireEnv(t)
	if !kernelHasAufs() {
		t.Skip("this kernel has no AuFS (not in /proc/filesystems): the AuFS mount itself cannot be tested here")
	}
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	upper := filepath.Join(dir, "layer")
	c := newCtr(t, ctrOpts{hook: "lxc-hook-aufs", args: []string{"--lower", tpl, "--upper", upper}})
	c.mustStart()
	c.mustSh("echo aufs > /root/a && rm /etc/from-template && sync")
	c.stop(false)
	assertNoLoops(t, dir, "after stop")
	c.mustStart()
	if got := c.mustSh("cat /root/a"); got != "aufs\n" {
		t.Fatalf("after restart: %q", got)
	}
	if _, err := c.sh("cat /etc/from-template"); err == nil {
		t.Fatal("a deleted file came back")
	}
	c.stop(true)
	assertNoLoops(t, dir, "after the second stop")
	o := newCtr(t, ctrOpts{hook: "lxc-hook-overlay", args: []string{"--lower", tpl, "--upper", upper}})
	if err := o.start(); err == nil {
		o.stop(true)
		t.Fatal("overlay mounted a layer AuFS wrote")
	}
}
