// Package killpoint lets the fault tests (test/faults_test.go) SIGKILL a
// hook at a chosen point, the way a crash, an OOM kill or a power cut
// would stop it. It is for tests only: unless the environment variable
// LXC_HOOKS_TEST_KILLPOINT is set, every call is a no-op (one getenv).
//
// LXC_HOOKS_TEST_KILLPOINT=HOOKTYPE:POINT kills the hook when it reaches
// At(HOOKTYPE:POINT), e.g. "pre-mount:after-attach";
// LXC_HOOKS_TEST_KILLPOINT=HOOKTYPE:after=DURATION kills it that long
// after Arm(HOOKTYPE), e.g. "stop:after=3ms" (wherever it is then).
// lxc-start hands its environment to the hooks (and to its monitor, which
// runs the stop hooks), so the variable is set on one lxc-start only.
package killpoint

import (
	"os"
	"strings"
	"syscall"
	"time"
)

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
