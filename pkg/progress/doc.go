// Package progress shows how far a long operator command has come, on the
// terminal it runs on: one line per step, redrawn in place ("writing the
// template (squashfs-lz4): 1234 of 5678 blocks (21%)"), ended with the
// time the step took. Nothing is shown when the output is not a terminal
// (a pipe, a file, a hook's log): scripts and logs get the same output as
// without progress.
//
// The figures come from the tools doing the work wherever they report
// their own progress (mksquashfs's bar, mkfs.erofs's file lines, e2fsck's
// -C descriptor, resize2fs -p, mke2fs), read by the writers in tools.go,
// or from bytes counted by the caller (a copy, a tarball read). A Meter is
// nil when there is no terminal, and every method of a nil Meter does
// nothing, so callers pass it down without checks.
package progress
