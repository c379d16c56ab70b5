package test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lastErrorJSON is what status --json says about the container's log.
type lastErrorJSON struct {
	Containers []struct {
		Name          string `json:"name"`
		LastError     string `json:"last_error"`
		LastErrorTime string `json:"last_error_time"`
		LogFile       string `json:"log_file"`
	} `json:"containers"`
}

func lastErrorOf(t *testing.T, hook string, c *ctr) (string, time.Time, string) {
	t.Helper()
	out, err := admin(t, hook, "status", c.name, "--json", "-P", c.lxcpath)
	if err != nil {
		t.Fatalf("status: %v %s", err, out)
	}
	var s lastErrorJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil || len(s.Containers) != 1 {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	e := s.Containers[0]
	var at time.Time
	if e.LastErrorTime != "" {
		if at, err = time.Parse(time.RFC3339, e.LastErrorTime); err != nil {
			t.Fatalf("last_error_time %q: %v", e.LastErrorTime, err)
		}
	}
	return e.LastError, at, e.LogFile
}

// What a new user sees, with init's own config (no test logging added): a
// start the hooks refuse (the template moved away after init) fails, and
// the hook's line names the reason on lxc-start's stderr, daemonized and
// with -F; the container's log (init's lxc.log.file, at WARN) has it;
// status shows it, and forgets it after the next successful start. A
// device still held after lxc-stop is named on lxc-stop's stderr and by
// status. A start that goes well writes no line of the hooks.
func TestStartRefusalReachesTheUser(t *testing.T) {
	requireEnv(t)
	hook := "lxc-hook-loopimg"
	dir := testDir(t)
	tpl := filepath.Join(dir, "tpl.squashfs")
	copyFile(t, tplSquash, tpl)
	lxcpath := filepath.Join(workRoot, "lxc")
	os.MkdirAll(lxcpath, 0o755)
	defaults := filepath.Join(dir, "default.conf")
	os.WriteFile(defaults, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"), 0o644)
	name := uniqueName("err")
	if out, err := admin(t, hook, "init", name, "--template", tpl, "-P", lxcpath, "--default-config", defaults, "--size", "32M"); err != nil {
		t.Fatalf("init: %v %s", err, out)
	}
	c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name), logFile: filepath.Join(lxcpath, name, name+".log")}
	t.Cleanup(func() {
		if c.state() != "STOPPED" {
			exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
		}
		if t.Failed() {
			t.Logf("LXC log of %s:\n%s", c.name, lastLines(c.log(), 30))
		}
	})
	if !configHas(t, c, "\nlxc.log.file = "+c.logFile+"\nlxc.log.level = WARN\n") {
		b, _ := os.ReadFile(filepath.Join(c.dir, "config"))
		t.Fatalf("init wrote no log file at WARN:\n%s", b)
	}

	c.mustStart()
	c.stop(false)
	if lines := c.hookLogLines("WARN"); len(c.hookLogLines("ERROR")) > 0 || len(lines) > 0 {
		t.Fatalf("a start and stop that went well logged: %v %v", lines, c.hookLogLines("ERROR"))
	}
	if e, _, logFile := lastErrorOf(t, hook, c); e != "" || logFile != c.logFile {
		t.Fatalf("after a good start: last error %q, log %q", e, logFile)
	}

	if err := os.Rename(tpl, tpl+".moved"); err != nil {
		t.Fatal(err)
	}
	reason := `lower "` + tpl + `" does not exist`
	want := hook + ": " + name + ": pre-mount: error: " + reason
	before := time.Now()
	out, err := c.lxc("lxc-start")
	if err == nil {
		t.Fatal("the start without its template was not refused")
	}
	if !strings.Contains(out, want) {
		t.Fatalf("lxc-start (daemonized) does not show the hook's line %q:\n%s", want, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fg, err := exec.CommandContext(ctx, "lxc-start", "-F", "-n", c.name, "-P", c.lxcpath).CombinedOutput()
	if err == nil {
		t.Fatal("lxc-start -F without the template was not refused")
	}
	if !strings.Contains(string(fg), want) {
		t.Fatalf("lxc-start -F does not show the hook's line %q:\n%s", want, fg)
	}
	if lines := c.hookLogLines("ERROR"); len(lines) != 2 || !strings.Contains(lines[1], "pre-mount - "+reason) {
		t.Fatalf("the log's hook errors: %q", lines)
	}
	e, at, _ := lastErrorOf(t, hook, c)
	if e != "pre-mount: "+reason || at.Before(before.Add(-time.Second)) || at.After(time.Now()) {
		t.Fatalf("status: last error %q at %v", e, at)
	}
	txt, _ := admin(t, hook, "status", c.name, "-P", c.lxcpath)
	if !strings.Contains(txt, "  log:       "+c.logFile+"\n") || !strings.Contains(txt, "  last error (") || !strings.Contains(txt, "): pre-mount: "+reason+"\n") {
		t.Fatalf("status text:\n%s", txt)
	}

	// Back in place: the start works, and the error is history.
	if err := os.Rename(tpl+".moved", tpl); err != nil {
		t.Fatal(err)
	}
	c.mustStart()
	if e, _, _ := lastErrorOf(t, hook, c); e != "" {
		t.Fatalf("after a successful start status still shows %q", e)
	}

	// A process keeps the container's mount namespace: lxc-stop names it.
	holder, who := holdNamespace(t, c)
	c.waitInitReady()
	stopOut, err := c.lxc("lxc-stop")
	if err != nil {
		t.Fatalf("lxc-stop: %v %s", err, stopOut)
	}
	if !strings.Contains(stopOut, "is still attached after the container stopped") || !strings.Contains(stopOut, who) {
		t.Fatalf("lxc-stop does not name the holder %q:\n%s", who, stopOut)
	}
	if e, _, _ := lastErrorOf(t, hook, c); !strings.Contains(e, "still attached") || !strings.Contains(e, who) {
		t.Fatalf("status after a stop that left a device held: %q", e)
	}
	out, err = admin(t, hook, "release", c.name, "--kill", "-P", c.lxcpath)
	if err != nil || !strings.Contains(out, "killed pid "+strconv.Itoa(holder.Process.Pid)) {
		t.Fatalf("release --kill: %v %s", err, out)
	}
	holder.Wait()
	assertNoLoops(t, dir, "after release --kill")
}
