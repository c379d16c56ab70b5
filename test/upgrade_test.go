package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// oldRelease is the commit of 0.1.0 (CHANGELOG.md), the first version: its
// package installed the binaries as files in /usr/share/lxc/hooks and its
// hooks wrote the runtime records that an upgraded stop hook must read.
const oldRelease = "82b21bba81abed10ba16691fefdee0a907e769f2"

func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(self))
}

func mustExec(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, lastLines(string(out), 30))
	}
	return string(out)
}

// scratchRoot is an empty system root for dpkg --root.
func scratchRoot(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func dpkgInstall(t *testing.T, root, deb string) {
	t.Helper()
	mustExec(t, "dpkg", "--root="+root, "--force-depends", "--force-script-chrootless", "-i", deb)
}

// buildPackage runs make deb in src and returns the one package it made.
func buildPackage(t *testing.T, src string, vars ...string) string {
	t.Helper()
	mustExec(t, "make", append([]string{"-C", src, "deb"}, vars...)...)
	debs, _ := filepath.Glob(filepath.Join(src, "out", "lxc-hooks_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("packages in %s/out: %v", src, debs)
	}
	return debs[0]
}

// Containers started under the 0.1.0 package stop cleanly after the package
// was upgraded under them: dpkg swaps the binaries (and the layout: files in
// /usr/share/lxc/hooks become symlinks to /usr/bin) while they run, and the
// new stop hook (and the post-stop hook their lines still have) read the
// runtime records the old pre-mount wrote. Then they start and stop again
// under the new version, and again after migrate rewrote their lines.
func TestUpgradeWhileRunning(t *testing.T) {
	requireEnv(t)
	needTools(t, "apt-get install git tar make dpkg", "git", "tar", "make", "dpkg-deb", "dpkg")
	repo := repoRoot()
	if exec.Command("git", "-C", repo, "cat-file", "-e", oldRelease+"^{commit}").Run() != nil {
		t.Skip("no git history with commit " + oldRelease[:7] + " (0.1.0) to build the old version from: a shallow clone or a source tarball (git fetch --unshallow)")
	}
	dir := testDir(t)

	// The old source from git archive: nothing changes in the repository.
	src := filepath.Join(dir, "old-src")
	os.Mkdir(src, 0o755)
	mustExec(t, "git", "-C", repo, "archive", "-o", filepath.Join(dir, "old.tar"), oldRelease)
	mustExec(t, "tar", "-xf", filepath.Join(dir, "old.tar"), "-C", src)
	// Its own Makefile; a version below any this tree gives, so that the
	// second install is an upgrade whatever tags the clone has.
	oldDeb := buildPackage(t, src, "DEBVER=0~"+oldRelease[:7], "VERSION="+oldRelease[:7])
	newDeb := buildPackage(t, repo)
	newVersion := strings.TrimSpace(mustExec(t, "dpkg-deb", "-f", newDeb, "Version"))

	root := scratchRoot(t, dir)
	dpkgInstall(t, root, oldDeb)
	// One container per kind of writable layer, both on one template image,
	// so they also share its read-only loop device across the upgrade.
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	img := filepath.Join(dir, "layer.img")
	hookOf := func(b string) string { return filepath.Join(root, "usr/share/lxc/hooks", b) }
	if fi, err := os.Lstat(hookOf("lxc-hook-loopimg")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the 0.1.0 package should install the hooks as files: %v %v", fi, err)
	}
	// The hook lines 0.1.0 wrote: three keys.
	legacy := []string{"pre-mount", "stop", "post-stop"}
	cs := []*ctr{
		newCtr(t, ctrOpts{hookPath: hookOf("lxc-hook-loopimg"), hookTypes: legacy, args: []string{"--lower", tpl, "--image", img, "--size", "64M"}}),
		newCtr(t, ctrOpts{hookPath: hookOf("lxc-hook-overlay"), hookTypes: legacy, args: []string{"--lower", tpl, "--upper", filepath.Join(dir, "upper")}}),
	}
	for _, c := range cs {
		c.mustStart()
		c.mustSh("echo written-under-0.1.0 > /root/kept && sync")
		if !exists(c.runDir()) {
			t.Fatalf("the old pre-mount left no runtime directory %s", c.runDir())
		}
	}

	dpkgInstall(t, root, newDeb)
	if got := strings.Fields(mustExec(t, "dpkg", "--root="+root, "-s", "lxc-hooks")); !slices.Contains(got, newVersion) {
		t.Fatalf("after the upgrade dpkg reports %v, want version %s", got, newVersion)
	}
	for _, b := range []string{"lxc-hook-loopimg", "lxc-hook-overlay"} {
		target, err := filepath.EvalSymlinks(hookOf(b))
		if err != nil || target != filepath.Join(root, "usr/bin", b) {
			t.Fatalf("%s resolves to %q (%v), want the new binary in usr/bin", hookOf(b), target, err)
		}
		if v := mustExec(t, hookOf(b), "--version"); !strings.HasPrefix(v, b+" "+newVersion+" ") {
			t.Fatalf("the hook path runs %q, want version %s", v, newVersion)
		}
	}

	for round, when := range []string{
		"stop under the new version of containers started by 0.1.0",
		"stop after a restart under the new version",
	} {
		for _, c := range cs {
			if round == 1 {
				// The layers written under 0.1.0 boot again under the new version.
				c.mustStart()
				if out := c.mustSh("cat /root/kept"); strings.TrimSpace(out) != "written-under-0.1.0" {
					t.Fatalf("%s: /root/kept after the upgrade: %q", c.name, out)
				}
			} else if s := c.state(); s != "RUNNING" {
				t.Fatalf("%s is %s after the upgrade", c.name, s)
			}
		}
		for _, c := range cs {
			c.stop(false)
		}
		checkLeftNothing(t, cs, dir, img, when)
	}

	// migrate rewrites the 0.1.0 lines to the current ones (no post-stop),
	// and the containers run and stop clean on them.
	for _, c := range cs {
		prog := filepath.Base(strings.Fields(hookLineOf(t, c))[0])
		out := mustExec(t, hookOf(prog), "migrate", c.name, "-P", c.lxcpath)
		if !strings.Contains(out, "lxc.hook.post-stop removed") {
			t.Fatalf("migrate %s: %s", c.name, out)
		}
		cfg, _ := os.ReadFile(filepath.Join(c.dir, "config"))
		if strings.Contains(string(cfg), "lxc.hook.post-stop") || !strings.Contains(string(cfg), "lxc.hook.clone") {
			t.Fatalf("%s after migrate:\n%s", c.name, cfg)
		}
		c.mustStart()
		if out := c.mustSh("cat /root/kept"); strings.TrimSpace(out) != "written-under-0.1.0" {
			t.Fatalf("%s: /root/kept after migrate: %q", c.name, out)
		}
		c.stop(false)
	}
	checkLeftNothing(t, cs, dir, img, "stop after migrate")
}

// hookLineOf is the container's lxc.hook.pre-mount line.
func hookLineOf(t *testing.T, c *ctr) string {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(c.dir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(cfg), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == "lxc.hook.pre-mount" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s has no lxc.hook.pre-mount line", c.name)
	return ""
}

// checkLeftNothing: no loop device backed by a file of the test, nothing of
// it mounted on the host, the image fscks clean, the runtime records are
// gone and the hooks logged no error.
func checkLeftNothing(t *testing.T, cs []*ctr, dir, img, when string) {
	t.Helper()
	assertNoLoops(t, dir, when)
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			t.Fatalf("%s: still mounted on the host: %s", when, l)
		}
		for _, c := range cs {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], c.dir+"/") {
				t.Fatalf("%s: still mounted on the host: %s", when, l)
			}
		}
	}
	fsckClean(t, img, when)
	for _, c := range cs {
		if exists(c.runDir()) {
			t.Fatalf("%s: the runtime directory %s is left", when, c.runDir())
		}
		if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
			t.Fatalf("%s: the hooks of %s logged errors:\n%s", when, c.name, strings.Join(errs, "\n"))
		}
	}
}
