//go:build lxchooks_testhooks

package killpoint

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Enabled tells whether this build has the kill points.
const Enabled = true

// Env is the variable that arms a kill point.
const Env = "LXC_HOOKS_TEST_KILLPOINT"

// FiredEnv names a directory in which a kill point leaves a marker just
// before it kills (or stops) the process: a file named after the point
// and the PID, "POINT.PID" (or "POINT.stopped.PID"). A test that arms a
// point checks the marker, so a point that was renamed, moved off the
// path the test takes, or never reached fails the test instead of
// turning it into a plain start or stop.
const FiredEnv = "LXC_HOOKS_TEST_KILLPOINT_FIRED"

// At kills this process with SIGKILL if Env names point. With
// "POINT/stop" it stops the process there instead (SIGSTOP), for a test
// that acts while the process is at the point and then resumes it.
func At(point string) {
	v := os.Getenv(Env)
	switch {
	case v == "":
	case v == point:
		mark(point)
		kill()
	case v == point+"/stop":
		mark(point + ".stopped")
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
		time.AfterFunc(dur, func() { mark(v); kill() })
	}
}

// MarkerName is the name of the marker point leaves for process pid.
func MarkerName(point string, pid int) string {
	return point + "." + strconv.Itoa(pid)
}

// firedDir is the directory FiredEnv names, opened when the process
// starts: a point may fire where that path means nothing (the stop hook's
// stop:before-unmount runs in the container's mount namespace).
var firedDir = func() int {
	dir := os.Getenv(FiredEnv)
	if dir == "" {
		return -1
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}()

// mark leaves the marker of point in the directory FiredEnv names, if
// any. Never through a link: the directory is the test's, the file new.
func mark(point string) {
	if firedDir < 0 || strings.ContainsRune(point, '/') {
		return
	}
	fd, err := unix.Openat(firedDir, MarkerName(point, os.Getpid()), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return
	}
	unix.Write(fd, []byte(strings.Join(os.Args, " ")+"\n"))
	unix.Close(fd)
}

func kill() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not deferred; never go on
}
