package execs

import (
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	if _, err := Run(time.Second, "install it", "no-such-tool-here"); err == nil || !strings.Contains(err.Error(), "install it") {
		t.Fatalf("missing tool: %v", err)
	}
	out, err := Run(time.Second, "", "sh", "-c", "echo out; echo err >&2; exit 4")
	if ExitCode(err) != 4 || out != "out\nerr" {
		t.Fatalf("got %q, %v (code %d)", out, err, ExitCode(err))
	}
	if _, err := Run(50*time.Millisecond, "", "sleep", "5"); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("timeout: %v", err)
	}
}
