//go:build lxchooks_testhooks

package killpoint

import (
	"errors"
	"os"
	"os/exec"
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

func run(t *testing.T, child, point string) error {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "KILLPOINT_CHILD="+child)
	if point != "" {
		cmd.Env = append(cmd.Env, Env+"="+point)
	}
	return cmd.Run()
}

func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func TestAt(t *testing.T) {
	if err := run(t, "at", "pre-mount:after-attach"); !killed(err) {
		t.Fatalf("not killed at its point: %v", err)
	}
	for _, p := range []string{"", "pre-mount:after-image-mount", "stop:after=1ms"} {
		if err := run(t, "at", p); err != nil {
			t.Fatalf("%q: killed elsewhere: %v", p, err)
		}
	}
}

func TestArm(t *testing.T) {
	t0 := time.Now()
	if err := run(t, "arm", "stop:after=10ms"); !killed(err) || time.Since(t0) > 4*time.Second {
		t.Fatalf("not killed by its timer: %v", err)
	}
}
