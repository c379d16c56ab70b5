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

// An unprivileged start runs the hook binary three times: pre-start,
// the handover server (which also carries the user namespace the layers
// are idmapped with) and pre-mount. Each run is a process start and a Go
// runtime start on the container's start path, so one more is a cost the
// issue's target (no more over LXC's own floor than the privileged hooks)
// has no room for. Counted with strace, which follows every fork.
func TestUnprivilegedStartExecs(t *testing.T) {
	requireEnv(t)
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not installed: it counts the processes")
	}
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	c := unprivCtrOpts(t, ctrOpts{hook: "lxc-hook-overlay",
		args:  []string{"--lower", tpl, "--upper", filepath.Join(dir, "layer")},
		extra: []string{"lxc.log.level = TRACE"}})
	trace := filepath.Join(dir, "strace.out")
	// strace follows lxc-start into the monitor it leaves behind: it is
	// ended (and so detaches: -I 1, as with -o it would block SIGTERM) once
	// the container runs.
	st := exec.Command("strace", "-I", "1", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", trace,
		"lxc-start", "-n", c.name, "-P", c.lxcpath)
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.stop(true)
	running := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !running; time.Sleep(20 * time.Millisecond) {
		running = c.state() == "RUNNING"
	}
	st.Process.Signal(syscall.SIGTERM)
	st.Wait()
	if !running {
		b, _ := os.ReadFile(c.logFile)
		t.Fatalf("%s did not start under strace:\n%s", c.name, lastLines(string(b), 30))
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(binDir, "lxc-hook-overlay")
	var runs []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "execve(") || strings.Contains(line, "= -1 ") {
			continue
		}
		if strings.Contains(line, `execve("`+hook+`"`) || strings.Contains(line, `execve("/proc/self/exe", ["/proc/self/exe", "__lxc-hooks`) {
			runs = append(runs, line)
		}
	}
	if len(runs) != 3 {
		t.Fatalf("the hook binary ran %d times for one start, want 3 (pre-start, the handover server, pre-mount):\n%s", len(runs), strings.Join(runs, "\n"))
	}
	// For a person reading -v: what each hook run took, as it says.
	log, _ := os.ReadFile(c.logFile)
	for _, m := range regexp.MustCompile(`(?m)^.*(pre-start|pre-mount) done.*$`).FindAllString(string(log), -1) {
		t.Log(m)
	}
}

// With the log on lxc-start's -o (no lxc.log.file), the handover server
// writes pre-mount's line to it: the file pre-start found open in LXC and
// passed on, since the server (no capability, in a user namespace of its
// own) may not look into LXC's /proc entries for it.
func TestUnprivilegedServerLogsToStartLog(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	c := unprivCtrOpts(t, ctrOpts{hook: "lxc-hook-overlay", noLogFile: true,
		args: []string{"--lower", tpl, "--upper", filepath.Join(dir, "layer")}})
	logFile := filepath.Join(dir, "start.log")
	if out, err := c.lxc("lxc-start", "-o", logFile, "-l", "DEBUG"); err != nil {
		t.Fatalf("lxc-start: %v %s", err, out)
	}
	defer c.stop(true)
	// The server writes it after pre-mount's reply: a bounded wait.
	re := regexp.MustCompile(`(?m)^lxc-hook-overlay ` + c.name + ` \S+ DEBUG +overlay - pre-mount - pre-mount done took=`)
	var b []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, _ = os.ReadFile(logFile); re.Match(b) {
			return
		}
	}
	t.Fatalf("lxc-start -o log lacks the server's pre-mount line:\n%s", lastLines(string(b), 30))
}
