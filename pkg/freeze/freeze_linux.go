package freeze

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Target is what to freeze, held open.
type Target struct {
	Kind Kind
	file *os.File
	own  bool // file is the Target's to close (a cgroup directory)
}

// FilesystemOn is the ext4 filesystem mounted from the block device dev
// (a loop device the caller opened and proved bound to the image). The
// caller keeps dev open until Thaw has returned.
func FilesystemOn(dev *os.File) Target { return Target{Kind: Filesystem, file: dev} }

// Close releases what the Target opened itself.
func (t Target) Close() error {
	if t.own && t.file != nil {
		return t.file.Close()
	}
	return nil
}

// holder freezes and thaws one target through its open file (in the
// watchdog, and in the copier when the watchdog is gone).
type holder interface {
	freeze(settle time.Duration) (already bool, err error)
	stillFrozen() bool
	thaw() error
	close()
}

type fsFreezer struct{ *fsHolder }

func (f fsFreezer) freeze(time.Duration) (bool, error) { return f.fsHolder.freeze() }

func newHolder(k Kind, f *os.File) (holder, error) {
	switch k {
	case Filesystem:
		h, err := newFSHolder(f)
		if err != nil {
			return nil, err
		}
		return fsFreezer{h}, nil
	case CgroupV1, CgroupV2:
		return &cgroupHolder{dir: f, v2: k == CgroupV2}, nil
	}
	return nil, fmt.Errorf("unknown kind %q", k)
}

// Freeze is a freeze held by a watchdog process.
type Freeze struct {
	target Target
	cmd    *exec.Cmd
	ctl    *os.File // closing it asks the watchdog to thaw
	first  chan string
	done   chan struct{} // closed once the final report (or EOF) is in
	final  string        // the final report, "" for EOF; set before done closes
	once   sync.Once
	res    Result
	err    error
}

// Start starts the watchdog, which freezes t, and returns once t is frozen.
// The caller must call Thaw (also after a failed copy): until then t stays
// frozen, at most o.Max.
func Start(t Target, o Options) (*Freeze, error) {
	o = o.withDefaults()
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	// The binary itself, by the kernel's link to it: never a file another
	// user can replace, and the same version as the copier.
	cmd := exec.Command("/proc/self/exe", watchdogArgs(t.Kind, o)...)
	cmd.Args[0] = WatchdogName
	cmd.Dir = "/" // pins no directory of the copier's
	cmd.Env = os.Environ()
	cmd.ExtraFiles = []*os.File{ctlR, repW, t.file} // fds 3, 4, 5
	// A process group of its own: Ctrl-C and a kill of the copier's group
	// do not reach it. No parent-death signal: it must outlive the copier.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	ctlR.Close()
	repW.Close()
	if err != nil {
		ctlW.Close()
		repR.Close()
		return nil, fmt.Errorf("starting the freeze watchdog: %w", err)
	}
	f := &Freeze{target: t, cmd: cmd, ctl: ctlW, first: make(chan string, 1), done: make(chan struct{})}
	go f.read(repR)
	select {
	case line, ok := <-f.first:
		switch {
		case ok && (line == lineFrozen || line == lineAlready):
			return f, nil
		case ok && strings.HasPrefix(line, lineError+" "):
			f.ctl.Close()
			f.reap()
			return nil, errors.New(strings.TrimPrefix(line, lineError+" "))
		}
		f.abandon()
		return nil, fmt.Errorf("%w (while freezing: %q)", ErrWatchdog, line)
	case <-time.After(o.Settle + 30*time.Second):
		// FIFREEZE still syncing, or a watchdog stuck: it thaws as soon as
		// it sees the pipe closed; it is killed if it does not report.
		f.abandon()
		return nil, fmt.Errorf("freezing took longer than %s; nothing was copied", o.Settle+30*time.Second)
	}
}

// read passes the first report to Start and keeps the final one.
func (f *Freeze) read(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		if n == 1 {
			f.first <- sc.Text()
			continue
		}
		f.final = sc.Text()
		break
	}
	if n == 0 {
		close(f.first)
	}
	close(f.done)
}

// Done is closed when the freeze has ended: after Thaw, or before it when
// the watchdog thawed at its limit or ended. A copy still running then is
// no longer consistent and should stop.
func (f *Freeze) Done() <-chan struct{} { return f.done }

// Thaw ends the freeze and says what it cost. It is safe to call from any
// goroutine (a signal handler's too) and more than once: the first call
// thaws, the others wait for it and return the same. An error means the
// freeze did not hold until now (ErrLimit, ErrLost, ErrWatchdog): what was
// copied is not consistent.
func (f *Freeze) Thaw() (Result, error) {
	f.once.Do(f.thaw)
	return f.res, f.err
}

func (f *Freeze) thaw() {
	f.res.Kind = f.target.Kind
	f.ctl.Close()
	final := "" // no report in time: as if the watchdog had died
	select {
	case <-f.done:
		final = f.final
	case <-time.After(30 * time.Second):
	}
	d, why, err := parseThawed(final)
	switch {
	case final == "" || err != nil:
		// The watchdog died (or hung): thaw here, from the copier.
		f.err = ErrWatchdog
		if err != nil {
			f.err = fmt.Errorf("%w: %v", ErrWatchdog, err)
		}
		if terr := f.thawHere(); terr != nil {
			f.err = fmt.Errorf("%v, and thawing from here failed: %v", f.err, terr)
		}
		return
	case why == whyLimit:
		f.err = ErrLimit
	case why == whyLost:
		f.err = ErrLost
	case why == whyAlready:
		f.res.Already = true
	}
	f.res.Frozen = d
	f.reap()
}

// abandon closes the pipe (the watchdog thaws when it gets to it) and
// reaps the watchdog; one that does not end is killed, and the target is
// thawed from here.
func (f *Freeze) abandon() {
	f.ctl.Close()
	if !f.reap() {
		f.thawHere()
	}
}

// reap waits, bounded, for the watchdog to exit, and kills it if it does
// not; it reports whether it exited by itself.
func (f *Freeze) reap() bool {
	exited := make(chan struct{})
	go func() { f.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
		return true
	case <-time.After(10 * time.Second):
		f.cmd.Process.Kill()
		<-exited
		return false
	}
}

// thawHere thaws the target from this process, after making sure the
// watchdog is gone (so that it cannot freeze after this thaw).
func (f *Freeze) thawHere() error {
	f.cmd.Process.Kill()
	f.reap()
	h, err := newHolder(f.target.Kind, f.target.file)
	if err != nil {
		return err
	}
	defer h.close()
	return h.thaw()
}

// IsWatchdog reports whether this process was started as a freeze
// watchdog (by Start).
func IsWatchdog() bool { return len(os.Args) > 0 && os.Args[0] == WatchdogName }

// WatchdogMain is the watchdog: it freezes the target (fd 5), reports on
// fd 4, waits until fd 3 reaches EOF (the copier closed it, or died) or
// the limit passes, checks the freeze still held, thaws, reports and
// returns the exit status.
func WatchdogMain() int {
	// It must outlive whatever stops the copier: a terminal's signals,
	// a service manager's first SIGTERM, the OOM killer.
	signal.Ignore(unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGPIPE, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGUSR1, unix.SIGUSR2)
	os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0)
	report := func(line string) { unix.Write(4, []byte(line+"\n")) }
	k, o, err := parseWatchdogArgs(os.Args[1:])
	if err != nil {
		report(errorLine(err))
		return 2
	}
	target := os.NewFile(5, "target")
	h, err := newHolder(k, target)
	if err != nil {
		report(errorLine(err))
		return 1
	}
	defer h.close()
	t0 := time.Now()
	already, err := h.freeze(o.Settle)
	if err != nil {
		report(errorLine(err))
		return 1
	}
	if already {
		report(lineAlready)
	} else {
		report(lineFrozen)
	}
	why := waitEOF(3, o.Max-time.Since(t0))
	if already {
		// Someone else's freeze (lxc-freeze, another copy): left as it
		// is, if it held; one lifted meanwhile fails the copy (and the
		// filesystem frozen again by the check is thawed below).
		if h.stillFrozen() {
			report(thawedLine(0, whyAlready))
			return 0
		}
		why = whyLost
	} else if !h.stillFrozen() {
		why = whyLost
	}
	// Thawing must not fail for a passing reason: a few tries.
	for i := 0; ; i++ {
		err = h.thaw()
		if err == nil || i == 4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	d := time.Since(t0)
	if err != nil {
		report(errorLine(err))
		return 1
	}
	report(thawedLine(d, why))
	return 0
}

// waitEOF waits until fd reaches end of file (what is written to it is
// read and dropped) or limit passes; it says which.
func waitEOF(fd int, limit time.Duration) string {
	deadline := time.Now().Add(limit)
	buf := make([]byte, 64)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return whyLimit
		}
		ms := int(left / time.Millisecond)
		if ms == 0 {
			ms = 1
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue // the time left is computed again
		}
		if err != nil {
			return whyAsked // a pipe that cannot be polled: nobody to wait for
		}
		if n == 0 {
			continue
		}
		r, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if r <= 0 {
			return whyAsked
		}
	}
}
