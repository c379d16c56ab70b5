// Package killpoint lets the fault tests (test/faults_test.go) SIGKILL a
// hook at a chosen point, the way a crash, an OOM kill or a power cut
// would stop it. It is compiled in only with the build tag
// lxchooks_testhooks, which the test harness (test/harness_test.go) and
// scripts/coverage.sh set and the release build (scripts/build.sh, make,
// scripts/deb.sh) never does: in a release binary At and Arm are empty
// functions the compiler inlines away, the variable below does nothing,
// and neither its name nor any point's name is in the binary. lxc-start
// hands its whole environment to the hooks, so a variable that could
// kill a released hook would be one more way to leave a container half
// set up.
//
// In a test build, LXC_HOOKS_TEST_KILLPOINT=HOOKTYPE:POINT kills the hook
// when it reaches At(HOOKTYPE:POINT), e.g. "pre-mount:after-attach";
// LXC_HOOKS_TEST_KILLPOINT=HOOKTYPE:after=DURATION kills it that long
// after Arm(HOOKTYPE), e.g. "stop:after=3ms" (wherever it is then);
// "POINT/stop" stops it there (SIGSTOP) instead. The variable is set on
// one lxc-start only (it reaches its monitor, which runs the stop hooks).
// With LXC_HOOKS_TEST_KILLPOINT_FIRED=DIR a point that fires first leaves
// a marker file in DIR (FiredEnv), which the tests check: an armed point
// that never fired (renamed, or off the path the test takes) fails the
// test instead of making it a plain start or stop.
package killpoint

// Tag is the build tag that compiles the kill points in.
const Tag = "lxchooks_testhooks"
