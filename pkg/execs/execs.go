// Package execs runs system tools (e2fsprogs, lxc-info) with argv, never
// through a shell, optionally bounded in time, with a clean environment and
// with tools looked up in the system directories only.
package execs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// ErrNotFound is a tool missing from the system directories.
var ErrNotFound = errors.New("not found")

// Dirs are where tools are looked for; a hook's PATH is LXC's, so it is
// not trusted to find them.
var Dirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin"}

// Options say how a tool runs.
type Options struct {
	// Timeout kills the tool after this long; 0: never (for tools that
	// must not be interrupted, such as resize2fs: see Progress).
	Timeout time.Duration
	// Hint is added to the error when the tool is missing, e.g. "install
	// e2fsprogs".
	Hint string
	// Files are passed to the tool as fds 3, 4, ...: a file whose flock it
	// must hold for as long as it runs, even if the caller dies.
	Files []*os.File
	// KeepOnParentDeath leaves the tool running if the caller dies; by
	// default it is SIGKILLed (Pdeathsig), so no tool outlives its hook.
	KeepOnParentDeath bool
	// Progress, if set, is called every ProgressEvery (default 1 minute)
	// while the tool runs, so a long run is visible in the log.
	Progress      func(elapsed time.Duration)
	ProgressEvery time.Duration
	// Context, when set, kills the tool when it is done (a copy that the
	// user interrupted); the error then matches context.Canceled.
	Context context.Context
}

// Run execs tool with args, killed after timeout, and returns its combined
// output (trimmed, at most 1 MiB kept). hint is added to the error when
// the tool is missing (e.g. "install e2fsprogs").
func Run(timeout time.Duration, hint, tool string, args ...string) (string, error) {
	return RunWith(Options{Timeout: timeout, Hint: hint}, tool, args...)
}

// RunWith execs tool with args as o says and returns its combined output
// (trimmed, at most 1 MiB kept).
func RunWith(o Options, tool string, args ...string) (string, error) {
	path := ""
	for _, d := range Dirs {
		if fi, err := os.Stat(filepath.Join(d, tool)); err == nil && fi.Mode().IsRegular() {
			path = filepath.Join(d, tool)
			break
		}
	}
	if path == "" {
		return "", fmt.Errorf("%s %w: %s", tool, ErrNotFound, o.Hint)
	}
	ctx := context.Background()
	if o.Context != nil {
		ctx = o.Context
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Args[0] = tool
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	out := &limitedBuffer{max: 1 << 20}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = o.Files
	// A grandchild keeping the output pipe open must not hold Wait forever.
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if !o.KeepOnParentDeath {
		// The parent-death signal fires when the *thread* that forked the
		// tool ends: keep this goroutine on its thread until the tool is
		// reaped.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s: %w", tool, err)
	}
	var stopProgress, progressDone chan struct{}
	if o.Progress != nil {
		every := o.ProgressEvery
		if every <= 0 {
			every = time.Minute
		}
		stopProgress, progressDone = make(chan struct{}), make(chan struct{})
		t0 := time.Now()
		go func() {
			defer close(progressDone)
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-tick.C:
					o.Progress(time.Since(t0))
				}
			}
		}()
	}
	err := cmd.Wait()
	if stopProgress != nil {
		close(stopProgress)
		<-progressDone // no report after the tool ended
	}
	text := strings.TrimSpace(out.String())
	if ctx.Err() == context.DeadlineExceeded {
		return text, fmt.Errorf("%s timed out after %s", tool, o.Timeout)
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return text, fmt.Errorf("%s stopped: %w", tool, context.Canceled)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return text, &ExitError{Tool: tool, Code: ee.ExitCode()}
	}
	if err != nil {
		return text, fmt.Errorf("%s: %w", tool, err)
	}
	return text, nil
}

// limitedBuffer keeps the first max bytes written and discards the rest,
// so a chatty tool cannot fill the hook's memory.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
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
