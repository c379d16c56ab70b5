package execs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRun(t *testing.T) {
	if _, err := Run(time.Second, "install it", "no-such-tool-here"); err == nil || !strings.Contains(err.Error(), "install it") {
		t.Fatalf("missing tool: %v", err)
	}
	out, err := Run(time.Second, "", "sh", "-c", "echo out; echo err >&2; exit 4")
	if ExitCode(err) != 4 || out != "out\nerr" {
		t.Fatalf("got %q, %v (code %d)", out, err, ExitCode(err))
	}
	if _, err := Run(50*time.Millisecond, "", "sleep", "5"); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("timeout: %v", err)
	}
}

// The helper runs a tool and is then SIGKILLed by the test.
func TestHelperRunsSleep(t *testing.T) {
	if os.Getenv("EXECS_HELPER") == "" {
		t.Skip("helper for TestToolDiesWithItsCaller")
	}
	f, _ := os.OpenFile(os.Getenv("EXECS_LOCK"), os.O_RDWR, 0)
	unix.Flock(int(f.Fd()), unix.LOCK_EX)
	RunWith(Options{Files: []*os.File{f}, KeepOnParentDeath: os.Getenv("EXECS_HELPER") == "keep"}, "sleep", "30")
}

// A tool dies with the hook that ran it (Pdeathsig), unless asked to stay;
// then it holds the lock it was given for as long as it runs.
func TestToolDiesWithItsCaller(t *testing.T) {
	for _, mode := range []string{"kill", "keep"} {
		lock := filepath.Join(t.TempDir(), "lock")
		os.WriteFile(lock, nil, 0o600)
		helper := exec.Command(os.Args[0], "-test.run=^TestHelperRunsSleep$")
		helper.Env = append(os.Environ(), "EXECS_HELPER="+mode, "EXECS_LOCK="+lock)
		if err := helper.Start(); err != nil {
			t.Fatal(err)
		}
		sleepPID := 0
		for i := 0; i < 1000 && sleepPID == 0; i++ {
			kids, _ := filepath.Glob("/proc/" + strconv.Itoa(helper.Process.Pid) + "/task/*/children")
			for _, k := range kids {
				for _, f := range strings.Fields(readString(k)) {
					// The child once it runs sleep (not between fork and exec).
					if strings.HasPrefix(readString("/proc/"+f+"/cmdline"), "sleep\x00") {
						sleepPID, _ = strconv.Atoi(f)
					}
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		if sleepPID == 0 {
			t.Fatal("the helper never started sleep")
		}
		helper.Process.Kill()
		helper.Wait()
		gone := false
		for i := 0; i < 400 && !gone; i++ {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(sleepPID) + "/stat")
			gone = err != nil || strings.Contains(string(b), ") Z ")
			time.Sleep(5 * time.Millisecond)
		}
		f, _ := os.OpenFile(lock, os.O_RDWR, 0)
		lockErr := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		f.Close()
		switch mode {
		case "kill":
			if !gone {
				unix.Kill(sleepPID, unix.SIGKILL)
				t.Fatal("the tool outlived its caller")
			}
		case "keep":
			unix.Kill(sleepPID, unix.SIGKILL)
			if gone || lockErr == nil {
				t.Fatalf("kept tool: gone %v, lock free %v", gone, lockErr == nil)
			}
		}
	}
}

// A tool with no timeout is never killed; its progress is reported.
func TestProgressWithoutTimeout(t *testing.T) {
	var calls int
	out, err := RunWith(Options{Progress: func(time.Duration) { calls++ }, ProgressEvery: 20 * time.Millisecond}, "sh", "-c", "sleep 0.2; echo done")
	if err != nil || out != "done" {
		t.Fatalf("%q %v", out, err)
	}
	if calls < 2 {
		t.Fatalf("progress reported %d times over 200ms at 20ms", calls)
	}
}

func readString(p string) string { b, _ := os.ReadFile(p); return string(b) }

// Terminal gives the tool a terminal of 80 columns (tty and stty answer
// from it), its output reaches Output as it comes and is returned too;
// without Terminal the tool has none.
func TestTerminal(t *testing.T) {
	var seen strings.Builder
	out, err := RunWith(Options{Timeout: 10 * time.Second, Terminal: true, Output: &seen}, "sh", "-c", "tty <&1; stty size <&1; echo err >&2")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.HasPrefix(out, "/dev/pts/") || !strings.Contains(out, "24 80") || !strings.Contains(out, "err") {
		t.Fatalf("on the pty: %q", out)
	}
	if seen.String() == "" || !strings.Contains(seen.String(), "24 80") {
		t.Fatalf("Output got %q", seen.String())
	}
	out, err = RunWith(Options{Timeout: 10 * time.Second}, "sh", "-c", "tty <&1")
	if err == nil || !strings.Contains(out, "not a tty") {
		t.Fatalf("without Terminal: %v %q", err, out)
	}
	// A tool that leaves a child holding the pty: RunWith returns anyway.
	t0 := time.Now()
	if _, err := RunWith(Options{Timeout: 30 * time.Second, Terminal: true}, "sh", "-c", "sleep 7 & echo started"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 15*time.Second {
		t.Fatalf("waited %s for a child that kept the pty", d)
	}
}

// ReadBytes counts what the tool reads; Stdin is its input.
func TestReadBytesAndStdin(t *testing.T) {
	p := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(p, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// sh counts cat's reads once it has reaped it (the kernel adds a
	// reaped child's I/O to its parent's), and is sampled after that.
	var most int64
	_, err := RunWith(Options{Timeout: 10 * time.Second, ReadBytes: func(n int64) { most = max(most, n) }}, "sh", "-c", "cat \"$0\" >/dev/null; sleep 0.5", p)
	if err != nil {
		t.Fatal(err)
	}
	if most < 8<<20 {
		t.Fatalf("ReadBytes saw %d bytes read, want at least %d", most, 8<<20)
	}
	out, err := RunWith(Options{Timeout: 10 * time.Second, Stdin: strings.NewReader("from stdin")}, "cat")
	if err != nil || out != "from stdin" {
		t.Fatalf("%v %q", err, out)
	}
}

func TestShown(t *testing.T) {
	for in, want := range map[string]string{
		"plain\nwords":                          "plain\nwords",
		"\r[==  ] 1/4 25%\r[====] 4/4 100%\r\n": "[====] 4/4 100%\n",
		"\x1b[KProcessing a ...\r\x1b[KProcessing b ...\r<E> erofs: failed to build shared xattrs\nmore": "<E> erofs: failed to build shared xattrs\nmore",
		"a\r\nb\r\n": "a\nb\n",
	} {
		if got := Shown(in); got != want {
			t.Errorf("Shown(%q) = %q, want %q", in, got, want)
		}
	}
}

// A done Context stops the tool at once, and the error says so.
func TestContextStopsTool(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 := time.Now()
	_, err := RunWith(Options{Context: ctx, Timeout: time.Minute}, "sleep", "30")
	if !errors.Is(err, context.Canceled) || time.Since(t0) > 20*time.Second {
		t.Fatalf("sleep 30 with a cancelled context: %v after %s", err, time.Since(t0))
	}
}
