// Package execs runs system tools (e2fsprogs, lxc-info) with argv, never
// through a shell, bounded in time, and without os/exec, which would add a
// sixth to each hook binary.
package execs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrNotFound is a tool missing from the system directories.
var ErrNotFound = errors.New("not found")

// Dirs are where tools are looked for; a hook's PATH is LXC's, so it is
// not trusted to find them.
var Dirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin"}

// Run execs tool with args and returns its combined output (trimmed, at
// most 1 MiB kept). It gives up after timeout, killing the tool. hint is
// added to the error when the tool is missing (e.g. "install e2fsprogs").
func Run(timeout time.Duration, hint, tool string, args ...string) (string, error) {
	path := ""
	for _, d := range Dirs {
		if fi, err := os.Stat(filepath.Join(d, tool)); err == nil && fi.Mode().IsRegular() {
			path = filepath.Join(d, tool)
			break
		}
	}
	if path == "" {
		return "", fmt.Errorf("%s %w: %s", tool, ErrNotFound, hint)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		r.Close()
		w.Close()
		return "", err
	}
	defer devnull.Close()
	p, err := os.StartProcess(path, append([]string{tool}, args...), &os.ProcAttr{
		Env:   []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"},
		Files: []*os.File{devnull, w, w},
	})
	w.Close()
	if err != nil {
		r.Close()
		return "", fmt.Errorf("%s: %w", tool, err)
	}
	timedOut := make(chan struct{})
	timer := time.AfterFunc(timeout, func() {
		close(timedOut)
		p.Kill()
	})
	var buf bytes.Buffer
	buf.ReadFrom(io.LimitReader(r, 1<<20))
	io.Copy(io.Discard, r)
	r.Close()
	st, err := p.Wait()
	timer.Stop()
	out := strings.TrimSpace(buf.String())
	select {
	case <-timedOut:
		return out, fmt.Errorf("%s timed out after %s", tool, timeout)
	default:
	}
	if err != nil {
		return out, fmt.Errorf("%s: %w", tool, err)
	}
	if code := st.ExitCode(); code != 0 {
		return out, &ExitError{Tool: tool, Code: code}
	}
	return out, nil
}

// ExitError is a tool's non-zero exit.
type ExitError struct {
	Tool string
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("%s exited with status %d", e.Tool, e.Code) }

// ExitCode is err's exit status: 0 for nil, -1 when the tool did not run.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return -1
}
