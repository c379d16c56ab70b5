package admin

import (
	"os"
	"path/filepath"
)

// lxcHookDir is where LXC keeps hooks; the package puts symlinks to the
// binaries (in /usr/bin) there.
const lxcHookDir = "/usr/share/lxc/hooks"

// hookExecutable is the path of this binary to write on hook lines.
func hookExecutable(program string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	return hookPath(lxcHookDir, self, program), nil
}

// hookPath is the path init writes on the hook lines: the one in LXC's hook
// directory dir when that is this very binary, so that configs name the
// path that stays put whatever the package layout; else the binary's own
// path (a build run from the source tree, make install with another PREFIX).
func hookPath(dir, self, program string) string {
	inDir := filepath.Join(dir, program)
	a, err := os.Stat(inDir)
	if err != nil {
		return self
	}
	if b, err := os.Stat(self); err == nil && os.SameFile(a, b) {
		return inDir
	}
	return self
}
