package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lxc-hooks/lxc-hooks/internal/debroot"
)

// systemdCache keeps the Debian root the systemd test boots, built once per
// machine (debootstrap takes a minute or two): outside the test run's own
// directory, which every run removes.
const systemdCache = "/var/cache/lxc-hooks-test"

// debianRoot returns the Debian bookworm root with systemd (debootstrap
// --variant=minbase --include=systemd-sysv from the mirror this machine's
// apt uses), built once per machine into systemdCache.
func debianRoot(t *testing.T) string {
	t.Helper()
	t0 := time.Now()
	// Bounded: another run's debootstrap takes minutes, not more.
	root, built, err := debroot.Build(systemdCache, debroot.Mirror(), 15*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if built {
		t.Logf("debootstrap bookworm (minbase, systemd-sysv) into %s: %s (once per machine)", root, since(t0))
	}
	return root
}

// waitSystemd waits, bounded, until systemd in c has finished booting:
// `systemctl is-system-running --wait` answers running or degraded (a
// minbase root in a container may have a unit that fails). Before systemd
// listens, systemctl fails: then it asks again.
func waitSystemd(t *testing.T, c *ctr, limit time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	last := ""
	for ctx.Err() == nil {
		cmd := exec.CommandContext(ctx, "lxc-attach", "-n", c.name, "-P", c.lxcpath, "--clear-env", "--",
			"/bin/systemctl", "is-system-running", "--wait")
		out, _ := cmd.Output()
		switch last = strings.TrimSpace(string(out)); last {
		case "running", "degraded":
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("systemd in %s did not finish booting within %s (last state %q)", c.name, limit, last)
	return ""
}

// waitRunningAgain waits, bounded, until c runs with an init other than
// oldInit (LXC restarted it after a reboot from inside).
func waitRunningAgain(t *testing.T, c *ctr, oldInit int, limit time.Duration) int {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c.state() != "RUNNING" {
			continue
		}
		out, err := c.lxc("lxc-info", "-pH")
		if n, _ := strconv.Atoi(strings.TrimSpace(out)); err == nil && n > 0 && n != oldInit {
			return n
		}
	}
	t.Fatalf("%s did not come back RUNNING with a new init within %s (state %s)", c.name, limit, c.state())
	return 0
}

// A real systemd template (Debian bookworm, debootstrap minbase with
// systemd-sysv), made a template with the hooks' own `template` command
// and containers with `init`, privileged and --unprivileged, as the
// README's first example does: init finds systemd inside the template and
// sets its halt signal (SIGRTMIN+3), and not for the busybox template; the
// container boots to systemd's settled state; lxc-stop halts it cleanly
// through that signal (--nokill: a halt that did not work fails instead of
// being killed at the timeout); `reboot` from inside brings it back
// RUNNING with a new init, the layer's data kept and no loop device more;
// `poweroff` and `halt` from inside stop it with nothing left attached or
// mounted. The timings are logged (no assertion on them: benchmarks
// measure speed).
func TestSystemdTemplate(t *testing.T) {
	requireEnv(t)
	root := debianRoot(t)
	dir := testDir(t)
	tpl := filepath.Join(dir, "debian.squashfs")
	t0 := time.Now()
	if out, err := admin(t, "lxc-hook-loopimg", "template", tpl, "--from", root); err != nil {
		t.Fatalf("template: %v\n%s", err, out)
	}
	t.Logf("template %s from %s: %s", filepath.Base(tpl), root, since(t0))
	lxcpath := filepath.Join(workRoot, "lxc")

	// init looks inside each template: systemd's gets its halt signal,
	// busybox's (no systemd) does not.
	if cfg, _ := os.ReadFile(filepath.Join(initAt(t, "lxc-hook-loopimg", lxcpath, tplSquash, "--size", "32M").dir, "config")); strings.Contains(string(cfg), systemdHalt) {
		t.Fatalf("init gave the busybox template systemd's halt signal:\n%s", cfg)
	}
	t.Run("privileged", func(t *testing.T) {
		systemdLifeCycle(t, initAt(t, "lxc-hook-loopimg", lxcpath, tpl, "--size", "512M"), dir)
	})
	t.Run("unprivileged", func(t *testing.T) {
		systemdLifeCycle(t, initUnprivileged(t, lxcpath, tpl, "--size", "512M"), dir)
	})
}

const systemdHalt = "lxc.signal.halt = SIGRTMIN+3\n"

// initUnprivileged runs "lxc-hook-loopimg init --unprivileged" as a user
// would, with the suite's ID block given to root in /etc/subuid and
// /etc/subgid (seen only by init, in a private mount namespace).
func initUnprivileged(t *testing.T, lxcpath, tpl string, extra ...string) *ctr {
	t.Helper()
	if err := os.Chmod(workRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	defaults := filepath.Join(workRoot, "default.conf")
	os.WriteFile(defaults, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"), 0o644)
	name := uniqueName("uinit")
	rootLine := "root:" + unprivRoot + ":65536\n"
	args := append([]string{"init", name, "--template", tpl, "-P", lxcpath, "--default-config", defaults, "--unprivileged"}, extra...)
	if out, err := runWithSubIDs(t, rootLine, rootLine, filepath.Join(binDir, "lxc-hook-loopimg"), args...); err != nil {
		t.Fatalf("init --unprivileged: %v %s", err, out)
	}
	c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name), logFile: filepath.Join(lxcpath, name, name+".log")}
	c.rootfs = filepath.Join(c.dir, "rootfs")
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

// systemdLifeCycle boots c, made by init from the systemd template in
// tplDir, and stops it every way (see TestSystemdTemplate).
func systemdLifeCycle(t *testing.T, c *ctr, tplDir string) {
	cfg, _ := os.ReadFile(filepath.Join(c.dir, "config"))
	if !strings.Contains(string(cfg), systemdHalt) {
		t.Fatalf("init did not set systemd's halt signal for a systemd template:\n%s", cfg)
	}
	img := filepath.Join(c.dir, "layer.img")
	watch := []string{tplDir, c.dir} // the template's device, the image's

	loops := func() []string {
		var l []string
		for _, d := range watch {
			l = append(l, loopsUnder(d)...)
		}
		sort.Strings(l)
		return l
	}
	boot := func(what string) {
		t.Helper()
		t0 := time.Now()
		c.mustStart()
		state := waitSystemd(t, c, 2*time.Minute)
		t.Logf("%s: lxc-start to systemd %s: %s", what, state, since(t0))
		if l := loops(); len(l) != 2 {
			t.Fatalf("%s: loop devices while running %v, want 2 (template, image)", what, l)
		}
	}
	// gone checks, after the container stopped and its monitor (which runs
	// the stop hook) ended, that nothing of it is left.
	gone := func(what string) {
		t.Helper()
		if s := c.state(); s != "STOPPED" {
			t.Fatalf("%s: %s", what, s)
		}
		if l := loops(); len(l) > 0 {
			t.Fatalf("%s: loop devices left %v", what, l)
		}
		if m := mountsUnder(c.dir); len(m) > 0 {
			t.Fatalf("%s: mounts left %v", what, m)
		}
		if exists(c.runDir()) {
			t.Fatalf("%s: runtime directory %s left", what, c.runDir())
		}
		if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
			t.Fatalf("%s: hook errors:\n%s", what, strings.Join(errs, "\n"))
		}
		fsckClean(t, img, what)
	}
	// fromInside runs a command that ends the container from inside and
	// waits, bounded, until LXC's monitor is gone (it ends after the stop
	// hook), returning how long the container took to stop.
	fromInside := func(cmd string) string {
		t.Helper()
		mon := monitorPID(t, c)
		t0 := time.Now()
		c.lxc("lxc-attach", "--clear-env", "--", "/bin/systemctl", cmd) // it may lose its connection
		if out, err := c.lxc("lxc-wait", "-s", "STOPPED", "-t", "120"); err != nil {
			t.Fatalf("%s from inside: not STOPPED within 120 s: %v %s", cmd, err, out)
		}
		took := since(t0)
		waitGone(t, mon, "the LXC monitor after "+cmd)
		return took
	}

	boot("first boot")
	c.mustSh("echo kept > /root/kept && sync")

	// lxc-stop sends lxc.signal.halt and waits; --nokill: if systemd did
	// not halt, lxc-stop fails at the timeout instead of killing it.
	t0 := time.Now()
	if out, err := c.lxc("lxc-stop", "--nokill", "-t", "60"); err != nil {
		t.Fatalf("lxc-stop (halt signal, no kill) failed: systemd did not halt within 60 s: %v %s", err, out)
	}
	t.Logf("lxc-stop: clean halt through SIGRTMIN+3 in %s", since(t0))
	gone("after lxc-stop")

	boot("second boot")
	if got := c.mustSh("cat /root/kept"); got != "kept\n" {
		t.Fatalf("after lxc-stop and a restart: %q", got)
	}
	oldInit := c.pid()
	t0 = time.Now()
	c.lxc("lxc-attach", "--clear-env", "--", "/bin/systemctl", "reboot")
	newInit := waitRunningAgain(t, c, oldInit, 2*time.Minute)
	state := waitSystemd(t, c, 2*time.Minute)
	t.Logf("reboot from inside: RUNNING again with init %d (was %d), systemd %s, after %s", newInit, oldInit, state, since(t0))
	if got := c.mustSh("cat /root/kept"); got != "kept\n" {
		t.Fatalf("after the reboot: %q", got)
	}
	if l := loops(); len(l) != 2 {
		t.Fatalf("after the reboot: loop devices %v, want 2 (template, image)", l)
	}
	if errs := c.hookLogLines("ERROR"); len(errs) > 0 {
		t.Fatalf("hook errors over the reboot:\n%s", strings.Join(errs, "\n"))
	}
	c.mustSh("echo rebooted >> /root/kept && sync")

	t.Logf("poweroff from inside: STOPPED after %s", fromInside("poweroff"))
	gone("after poweroff from inside")

	boot("third boot")
	if got := c.mustSh("cat /root/kept"); got != "kept\nrebooted\n" {
		t.Fatalf("after the poweroff and a restart: %q", got)
	}
	t.Logf("halt from inside: STOPPED after %s", fromInside("halt"))
	gone("after halt from inside")
}
