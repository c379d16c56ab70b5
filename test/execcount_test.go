package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Every hook process is a process start and a Go runtime start on the
// container's start or stop path, the largest cost a hook has: so a start
// runs the hook binary exactly once (pre-mount; pre-start for an
// unprivileged container), and so does a stop (the stop hook). Counted with
// strace, which follows every fork of lxc-start's monitor.
func TestOneHookProcessPerStartAndStop(t *testing.T) {
	requireEnv(t)
	if _, err := exec.LookPath("strace"); err != nil {
		t.Fatal("strace is not installed (scripts/deps.sh installs it): it counts the processes")
	}
	for _, tc := range []struct {
		name, hook string
		unpriv     bool
	}{
		{"overlay", "lxc-hook-overlay", false},
		{"loopimg", "lxc-hook-loopimg", false},
		{"overlay-unprivileged", "lxc-hook-overlay", true},
		{"loopimg-unprivileged", "lxc-hook-loopimg", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			tpl := filepath.Join(dir, "tpl.squashfs")
			copyFile(t, tplSquash, tpl)
			args := layerArgs(tc.hook, tpl, dir)
			o := ctrOpts{hook: tc.hook, args: args, extra: []string{"lxc.log.level = DEBUG"}}
			var c *ctr
			if tc.unpriv {
				c = unprivCtrOpts(t, o)
			} else {
				c = newCtr(t, o)
			}
			// The first start of a mapping makes its user namespace (one
			// short-lived process, once per mapping and boot): not counted.
			c.mustStart()
			c.stop(false)

			trace := filepath.Join(dir, "strace.out")
			// strace follows lxc-start into the monitor it leaves behind,
			// and so through the stop too; -I 1: SIGTERM ends it (with -o it
			// would block it).
			st := exec.Command("strace", "-I", "1", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", trace,
				"lxc-start", "-n", c.name, "-P", c.lxcpath)
			if err := st.Start(); err != nil {
				t.Fatal(err)
			}
			stopped := false
			defer func() {
				if !stopped {
					c.stop(true)
				}
			}()
			running := false
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !running; time.Sleep(20 * time.Millisecond) {
				running = c.state() == "RUNNING"
			}
			if !running {
				st.Process.Signal(syscall.SIGTERM)
				st.Wait()
				t.Fatalf("%s did not start under strace:\n%s", c.name, lastLines(c.log(), 30))
			}
			started := hookExecs(t, trace, c)
			c.stop(false)
			stopped = true
			// The monitor exits when the stop is done; strace with it.
			done := make(chan error, 1)
			go func() { done <- st.Wait() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				st.Process.Signal(syscall.SIGTERM)
				<-done
			}
			all := hookExecs(t, trace, c)
			stopping := all[len(started):]
			if len(started) != 1 {
				t.Fatalf("the hook binary ran %d times for one start, want 1:\n%s", len(started), strings.Join(started, "\n"))
			}
			if len(stopping) != 1 || !strings.Contains(stopping[0], `"stop"`) {
				t.Fatalf("the hook binary ran %d times for one stop, want 1 (the stop hook):\n%s", len(stopping), strings.Join(stopping, "\n"))
			}
			assertNoLoops(t, dir, "after the counted stop")
			// For a person reading -v: what each hook run took, as it says.
			for _, m := range regexp.MustCompile(`(?m)^.*(pre-start|pre-mount|stop) done.*$`).FindAllString(c.log(), -1) {
				t.Log(m)
			}
		})
	}
}

// hookExecs lists the execve calls of the hook binary (or of itself, as
// /proc/self/exe with a hidden first argument; busybox in the container
// runs /proc/self/exe too) in an strace output.
func hookExecs(t *testing.T, trace string, c *ctr) []string {
	t.Helper()
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "execve(") || strings.Contains(line, "= -1 ") {
			continue
		}
		if strings.Contains(line, `execve("`+binDir+`/lxc-hook-`) || strings.Contains(line, `execve("/proc/self/exe", ["/proc/self/exe", "__lxc-hooks`) {
			runs = append(runs, line)
		}
	}
	return runs
}
