//go:build lxchooks_testhooks

package killpoint

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test re-run its own binary as the process to kill.
func TestMain(m *testing.M) {
	switch os.Getenv("KILLPOINT_CHILD") {
	case "at":
		At("pre-mount:after-attach")
		os.Exit(0)
	case "arm":
		Arm("stop")
		time.Sleep(5 * time.Second)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// run runs the child with point armed and markers going to dir; it returns
// how the child ended and its PID.
func run(t *testing.T, child, point, dir string) (error, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "KILLPOINT_CHILD="+child, FiredEnv+"="+dir)
	if point != "" {
		cmd.Env = append(cmd.Env, Env+"="+point)
	}
	err := cmd.Run()
	return err, cmd.Process.Pid
}

func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func markers(t *testing.T, dir string) []string {
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

func TestAt(t *testing.T) {
	dir := t.TempDir()
	err, pid := run(t, "at", "pre-mount:after-attach", dir)
	if !killed(err) {
		t.Fatalf("not killed at its point: %v", err)
	}
	if m := markers(t, dir); len(m) != 1 || m[0] != MarkerName("pre-mount:after-attach", pid) {
		t.Fatalf("markers %v, want the one of pre-mount:after-attach for pid %d", m, pid)
	}
	for _, p := range []string{"", "pre-mount:after-image-mount", "stop:after=1ms"} {
		dir := t.TempDir()
		if err, _ := run(t, "at", p, dir); err != nil {
			t.Fatalf("%q: killed elsewhere: %v", p, err)
		}
		if m := markers(t, dir); len(m) != 0 {
			t.Fatalf("%q: markers %v though nothing fired", p, m)
		}
	}
}

func TestArm(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	err, pid := run(t, "arm", "stop:after=10ms", dir)
	if !killed(err) || time.Since(t0) > 4*time.Second {
		t.Fatalf("not killed by its timer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stop:after=10ms."+strconv.Itoa(pid))); err != nil {
		t.Fatalf("no marker of the timer: %v", err)
	}
}
