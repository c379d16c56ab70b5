//go:build !lxchooks_testhooks

package killpoint

import (
	"os"
	"os/exec"
	"testing"
)

// In a build without the tag the variable arms nothing: a child that
// passes a kill point with it set exits normally.
func TestReleaseBuildIgnoresVariable(t *testing.T) {
	if os.Getenv("KILLPOINT_CHILD") == "at" {
		At("pre-mount:after-attach")
		Arm("stop")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReleaseBuildIgnoresVariable$")
	cmd.Env = append(os.Environ(), "KILLPOINT_CHILD=at", "LXC_HOOKS_TEST_KILLPOINT=pre-mount:after-attach")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("a release build was stopped by the kill point: %v\n%s", err, out)
	}
	if Enabled {
		t.Fatal("Enabled in a build without the tag")
	}
}
