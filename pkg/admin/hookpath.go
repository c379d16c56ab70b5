package admin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// lxcHookDir is where LXC keeps hooks; the package puts symlinks to the
// binaries (in /usr/bin) there.
const lxcHookDir = "/usr/share/lxc/hooks"

// hookExecutable is the path of this binary to write on hook lines. LXC
// runs it as root at every start, stop and copy, so it must be a file
// only root can change (trust.Executable): a build run from a user's checkout
// is refused, naming the directory at fault and the fix.
func hookExecutable(program string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := hookPath(lxcHookDir, self, program)
	if _, err := trust.Executable(p); err != nil {
		return "", fmt.Errorf("%v; LXC runs the binary on the hook lines as root at every start, stop and copy of the container, so init does not write this one: %s (e.g. /usr/bin/%s init ...); nothing was written", err, trust.InstallFix, program)
	}
	return p, nil
}

// hookPath is the path init writes on the hook lines: the one in LXC's hook
// directory dir when that is this very binary, so that configs name the
// path that stays put whatever the package layout; else the binary's own
// path (make install with another PREFIX).
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

// hookPrograms are the binaries of this project.
var hookPrograms = map[string]bool{"lxc-hook-overlay": true, "lxc-hook-loopimg": true, "lxc-hook-aufs": true}

// checkHookBinaries checks every lxc.hook.* line of a config's text that
// runs one of the hook binaries: each must be a file only root can change.
// It returns the first line that is not, as "KEY = BINARY: why".
func checkHookBinaries(text string) error {
	checked := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !strings.HasPrefix(key, "lxc.hook.") {
			continue
		}
		words, err := hook.SplitWords(strings.TrimSpace(val))
		if err != nil || len(words) == 0 || !hookPrograms[filepath.Base(words[0])] {
			continue
		}
		bin := words[0]
		if checked[bin] {
			continue
		}
		checked[bin] = true
		p := bin
		if !strings.Contains(p, "/") {
			// LXC's sh finds it in lxc-start's PATH; this PATH is the
			// best guess at that.
			if lp, err := exec.LookPath(p); err == nil {
				p = lp
			}
		}
		if _, err := trust.Executable(p); err != nil {
			return fmt.Errorf("%s = %s: %w", key, bin, err)
		}
	}
	return nil
}
