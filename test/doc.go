// Package test holds the real-LXC tests: they build the hook binaries and a
// busybox template, start real containers with lxc-start and check what a
// user would check: files persist, the template is unchanged, no loop
// device of the test is left attached, images fsck clean.
//
// They need root, LXC, squashfs-tools, busybox-static and e2fsprogs, and
// skip with the reason when one is missing. Loop devices are counted by
// backing file under the test's own directory: other processes may use
// loop devices at the same time.
package test
