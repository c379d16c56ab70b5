package handover

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Stop ends the recorded server only if that very process (PID and start
// time) still runs: a PID reused by another process is left alone.
func TestStopChecksIdentity(t *testing.T) {
	for _, sameStart := range []bool{true, false} {
		dir := t.TempDir()
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Skip("no sleep to test with:", err)
		}
		st, err := StartTime(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if !sameStart {
			st++
		}
		os.WriteFile(filepath.Join(dir, PIDFile), []byte(fmt.Sprintf("%d %d\n", cmd.Process.Pid, st)), 0o600)
		os.WriteFile(filepath.Join(dir, Socket), nil, 0o600)
		killed := Stop(dir)
		if killed != sameStart {
			t.Fatalf("same start time %v: killed %v", sameStart, killed)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
			if !sameStart {
				t.Fatal("a process with another start time was killed")
			}
		case <-time.After(200 * time.Millisecond):
			if sameStart {
				t.Fatal("the recorded server was not killed")
			}
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
		for _, f := range []string{PIDFile, Socket} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				t.Fatalf("%s left", f)
			}
		}
	}
	if Stop(t.TempDir()) {
		t.Fatal("Stop without a record killed something")
	}
}

func TestReceiveWithoutServer(t *testing.T) {
	_, _, err := Receive(t.TempDir(), time.Second)
	if err == nil || !errors.Is(err, ErrNoServer) {
		t.Fatalf("got %v, want ErrNoServer", err)
	}
}
