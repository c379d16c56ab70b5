//go:build lxchooks_testhooks

package killpoint

import (
	"os"
	"strings"
	"syscall"
	"time"
)

// Enabled tells whether this build has the kill points.
const Enabled = true

// Env is the variable that arms a kill point.
const Env = "LXC_HOOKS_TEST_KILLPOINT"

// At kills this process with SIGKILL if Env names point. With
// "POINT/stop" it stops the process there instead (SIGSTOP), for a test
// that acts while the process is at the point and then resumes it.
func At(point string) {
	v := os.Getenv(Env)
	switch {
	case v == "":
	case v == point:
		kill()
	case v == point+"/stop":
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	}
}

// Arm starts the timer of a "HOOKTYPE:after=DURATION" kill point for this
// hook run of type hookType.
func Arm(hookType string) {
	v := os.Getenv(Env)
	if v == "" {
		return
	}
	d, ok := strings.CutPrefix(v, hookType+":after=")
	if !ok {
		return
	}
	if dur, err := time.ParseDuration(d); err == nil {
		time.AfterFunc(dur, kill)
	}
}

func kill() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not deferred; never go on
}
