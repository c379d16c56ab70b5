// Package execs runs system tools (e2fsprogs, lxc-info) with argv, never
// through a shell, optionally bounded in time, with a clean environment and
// with tools looked up in the system directories only.
package execs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
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
	// Output, if set, is given the tool's output (stdout and stderr
	// together) as it comes, besides the text Run returns: a reader of the
	// tool's own progress lines (package progress).
	Output io.Writer
	// Terminal puts the tool's stdout and stderr on a pseudo-terminal of
	// its own, 80 columns wide, instead of a pipe: tools that draw their
	// progress only on a terminal, or write it out only there (mksquashfs
	// buffers its bar in a pipe for seconds), show it as it happens. The
	// pty never becomes the tool's controlling terminal.
	Terminal bool
	// Stdin is the tool's standard input (nil: /dev/null).
	Stdin io.Reader
	// ReadBytes, if set, is told every 200 ms how many bytes the tool has
	// read so far (rchar in /proc/PID/io: files and pipes alike), for
	// tools that report no progress of their own (cp).
	ReadBytes func(n int64)
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
	var sink io.Writer = out
	if o.Output != nil {
		sink = io.MultiWriter(out, o.Output)
	}
	// The same writer for both: os/exec then gives them one pipe, and
	// one goroutine writes to sink.
	cmd.Stdout, cmd.Stderr = sink, sink
	cmd.Stdin = o.Stdin
	var ptyMaster *os.File
	if o.Terminal {
		master, slave, err := OpenPTY(80)
		if err != nil {
			return "", fmt.Errorf("%s: a pseudo-terminal for its progress: %w", tool, err)
		}
		ptyMaster = master
		defer master.Close()
		defer slave.Close()
		cmd.Stdout, cmd.Stderr = slave, slave
	}
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
	var ptyDone chan struct{}
	if ptyMaster != nil {
		// Only the tool holds the pty's other end now: reads end (EIO)
		// once it has exited and everything it wrote has been read.
		cmd.Stdout.(*os.File).Close()
		ptyDone = make(chan struct{})
		go func() {
			defer close(ptyDone)
			io.Copy(sink, ptyMaster)
		}()
	}
	var stopReads, readsDone chan struct{}
	if o.ReadBytes != nil {
		stopReads, readsDone = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(readsDone)
			ioFile := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/io"
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopReads:
					return
				case <-tick.C:
					if n, ok := readChars(ioFile); ok {
						o.ReadBytes(n)
					}
				}
			}
		}()
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
	if stopReads != nil {
		close(stopReads)
		<-readsDone
	}
	if ptyDone != nil {
		// A child the tool left behind may hold the pty open: its output
		// is not waited for longer than os/exec waits for a pipe's.
		select {
		case <-ptyDone:
		case <-time.After(cmd.WaitDelay):
			ptyMaster.Close()
			<-ptyDone
		}
	}
	text := strings.TrimSpace(out.String())
	if o.Terminal {
		text = Shown(text)
	}
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

// Shown is what a terminal would show of a tool's output: of each line,
// what follows its last carriage return (a progress bar redrawn in place
// leaves only its last state, or the words written over it), without
// erase-line sequences; "\r\n" (a pty's line end) is a line end. Messages
// quote a tool's words from it.
func Shown(out string) string {
	lines := strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n")
	for i, l := range lines {
		l = strings.ReplaceAll(l, "\x1b[K", "")
		if j := strings.LastIndex(strings.TrimRight(l, "\r"), "\r"); j >= 0 {
			l = l[j+1:]
		}
		lines[i] = strings.TrimRight(l, "\r")
	}
	return strings.Join(lines, "\n")
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
