package lxclog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// StartedName is the file in a container's directory whose modification
// time is the hooks' last successful start of it: the errors that matter
// to its user are the ones logged after that (a refused start since, or a
// stop that left something held). A dot keeps it out of copies.
const StartedName = ".lxc-hook-started"

// MarkStarted records a successful start of the container name whose
// config is configFile (its root is built): two syscalls, once per start.
// Only in a container's own directory, $lxcpath/NAME (where status looks),
// not beside a config kept elsewhere (lxc-start -f). A failure is only
// logged at debug level: it costs status its "since" and nothing else.
func MarkStarted(configFile, name string, log *logrus.Entry) {
	if configFile == "" || filepath.Base(filepath.Dir(configFile)) != name {
		return
	}
	p := filepath.Join(filepath.Dir(configFile), StartedName)
	// O_NOFOLLOW: the container's directory is root's, but a link there
	// must not make root touch another file.
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err == nil {
		unix.Close(fd)
		// An open changes no times; this sets them to now.
		now := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
		err = unix.UtimesNanoAt(unix.AT_FDCWD, p, now, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		log.WithError(err).Debugf("could not record the start in %s", p)
	}
}

// LastStart is the time of the hooks' last successful start of the
// container whose directory is dir; zero when none is recorded.
func LastStart(dir string) time.Time {
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, StartedName), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return time.Time{}
	}
	return time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
}

// Entry is one line a hook wrote to an LXC log.
type Entry struct {
	Time    time.Time
	Program string // lxc-hook-loopimg
	Level   string // ERROR, WARN...
	Hook    string // pre-mount, stop...
	Message string // the rest of the line, fields included
}

// LogFile is the LXC log of the container of configFile as its config
// names it (lxc.log.file), else LXC's default place for it,
// $lxcpath/NAME/NAME.log.
func LogFile(configFile, name string) string {
	if f, err := os.Open(configFile); err == nil {
		cfg := ParseConfig(f)
		f.Close()
		if cfg.File != "" {
			return cfg.File
		}
	}
	return filepath.Join(filepath.Dir(configFile), name+".log")
}

// ParseLine reads a line the hooks wrote for container (LXCFormatter's
// format). ok is false for any other line: LXC's own, or another
// container's in a shared log.
func ParseLine(line, container string) (e Entry, ok bool) {
	prog, rest, found := strings.Cut(line, " ")
	if !found || !strings.HasPrefix(prog, "lxc-hook-") {
		return e, false
	}
	rest, found = strings.CutPrefix(rest, container+" ")
	if !found {
		return e, false
	}
	ts, rest, found := strings.Cut(rest, " ")
	t, err := time.Parse("20060102150405.000", ts)
	if !found || err != nil {
		return e, false
	}
	level, rest, found := strings.Cut(strings.TrimLeft(rest, " "), " ")
	if !found {
		return e, false
	}
	// "CATEGORY - HOOK - MESSAGE"
	parts := strings.SplitN(strings.TrimLeft(rest, " "), " - ", 3)
	if len(parts) != 3 {
		return e, false
	}
	return Entry{Time: t.UTC(), Program: prog, Level: level, Hook: parts[1], Message: parts[2]}, true
}

// readBackLimit bounds how much of a log LastError reads, from its end: LXC
// appends forever, and a log at DEBUG grows by megabytes a day.
const readBackLimit = 64 << 20

// LastError finds the newest ERROR line the hooks wrote to the log at path
// for container after since (zero: any). The log is read from its end, and
// only as far back as since (or readBackLimit). A log that does not exist
// is no error: ok is false.
func LastError(path, container string, since time.Time) (e Entry, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return e, false, nil
	}
	if err != nil {
		return e, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return e, false, err
	}
	if !fi.Mode().IsRegular() {
		return e, false, nil
	}
	// LXC's own lines carry a wrong second now and then (the millisecond
	// part wraps before the second does): a margin before stopping.
	stopBefore := since.Add(-2 * time.Second)
	end := fi.Size()
	var carry []byte // the start of a line whose beginning is further back
	const chunk = 64 << 10
	for end > 0 && fi.Size()-end < readBackLimit {
		n := int64(chunk)
		if end < n {
			n = end
		}
		buf := make([]byte, n, n+int64(len(carry)))
		if _, err := f.ReadAt(buf, end-n); err != nil && !errors.Is(err, io.EOF) {
			return e, false, err
		}
		end -= n
		buf = append(buf, carry...)
		lines := bytes.Split(buf, []byte("\n"))
		first := 0
		if end > 0 {
			carry = append([]byte(nil), lines[0]...)
			first = 1
		}
		for i := len(lines) - 1; i >= first; i-- {
			line := string(lines[i])
			if l, isOurs := ParseLine(line, container); isOurs {
				if !since.IsZero() && !l.Time.After(since) {
					return e, false, nil
				}
				if l.Level == "ERROR" {
					return l, true, nil
				}
				continue
			}
			if t, isLine := lineTime(line); isLine && !since.IsZero() && t.Before(stopBefore) {
				return e, false, nil
			}
		}
	}
	return e, false, nil
}

// lineTime reads the time of any LXC log line ("PROGRAM NAME TIME ...");
// a name with blanks in it is not recognised, which only costs reading
// further back.
func lineTime(line string) (time.Time, bool) {
	f := strings.Fields(line)
	if len(f) < 4 {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102150405.000", f[2])
	return t, err == nil
}
