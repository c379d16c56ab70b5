package lxclog

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

func TestParseConfig(t *testing.T) {
	c := ParseConfig(strings.NewReader(`
# lxc.log.file = /nope
lxc.log.file = /var/log/lxc/a.log
lxc.log.level=1
lxc.console.logfile = /var/log/lxc/a.console
lxc.log.file = /var/log/lxc/b.log
`))
	if c.File != "/var/log/lxc/b.log" || c.Level != "1" || c.ConsoleFile != "/var/log/lxc/a.console" {
		t.Fatalf("got %+v", c)
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]logrus.Level{
		"TRACE": logrus.TraceLevel, "1": logrus.DebugLevel, "info": logrus.InfoLevel,
		"NOTICE": logrus.InfoLevel, "WARN": logrus.WarnLevel, "5": logrus.ErrorLevel, "FATAL": logrus.ErrorLevel,
	} {
		if got, ok := ParseLevel(in); !ok || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	if _, ok := ParseLevel("LOUD"); ok {
		t.Error("LOUD accepted")
	}
}

func TestLXCFormat(t *testing.T) {
	e := logrus.NewEntry(logrus.New()).WithFields(logrus.Fields{FieldContainer: "web1", FieldHook: "pre-mount", "image": "/x y.img"})
	e.Time = time.Date(2026, 11, 26, 12, 9, 27, 170e6, time.UTC)
	e.Level = logrus.ErrorLevel
	e.Message = "refused\nsecond line"
	b, _ := (&LXCFormatter{Program: "lxc-hook-loopimg", Category: "loopimg"}).Format(e)
	want := `lxc-hook-loopimg web1 20261126120927.170 ERROR    loopimg - pre-mount - refused | second line image="/x y.img"` + "\n"
	if string(b) != want {
		t.Fatalf("got  %q\nwant %q", b, want)
	}
}

func TestLoggerWritesLXCLogAtConfiguredLevel(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte("lxc.log.file = "+logPath+"\nlxc.log.level = WARN\n"), 0o644)
	var stderr bytes.Buffer
	log, closer, err := New(Options{Program: "p", Category: "c", Container: "web1", Hook: "pre-mount", ConfigFile: cfg, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden at WARN")
	log.Error("shown")
	closer.Close()
	b, _ := os.ReadFile(logPath)
	if !regexp.MustCompile(`^p web1 \d{14}\.\d{3} ERROR    c - pre-mount - shown\n$`).Match(b) {
		t.Fatalf("log file: %q", b)
	}
	if got := stderr.String(); got != "p: web1: pre-mount: error: shown\n" {
		t.Fatalf("stderr: %q", got)
	}
}

func TestBadFlagLevel(t *testing.T) {
	if _, _, err := New(Options{FlagLevel: "loud"}); err == nil || !strings.Contains(err.Error(), `--log-level "loud"`) {
		t.Fatalf("got %v", err)
	}
}

func TestAppendMode(t *testing.T) {
	if !appendMode("pos:\t0\nflags:\t02102001\nmnt_id:\t30\n") {
		t.Error("O_APPEND not seen")
	}
	if appendMode("pos:\t0\nflags:\t02100002\n") {
		t.Error("O_RDWR taken for O_APPEND")
	}
}

// A symlink planted at the log path (by whoever can write its directory)
// must not make the hook append to the file it points at: the victim is
// unchanged, and the error still reaches stderr, with why the log was not
// written.
func TestLogPathSymlinkNotFollowed(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	logPath := filepath.Join(dir, "c.log")
	os.Symlink(victim, logPath)
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte("lxc.log.file = "+logPath+"\n"), 0o644)
	var stderr bytes.Buffer
	log, closer, err := New(Options{Program: "p", Category: "c", Container: "web1", Hook: "pre-mount", ConfigFile: cfg, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	log.Error("refused for a reason")
	closer.Close()
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("the victim was written: %q", b)
	}
	got := stderr.String()
	if !strings.Contains(got, "p: web1: pre-mount: error: refused for a reason\n") || !strings.Contains(got, logPath+" is a symlink: refused") {
		t.Fatalf("stderr: %q", got)
	}
}

// The default log ($lxcpath/NAME/NAME.log), a hard link, a FIFO (which
// would block an open for writing forever) and a file of another user are
// refused as well; a plain root-owned log is written.
func TestLogPathRefusals(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, nil, 0o644)
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	logPath := filepath.Join(dir, "web1.log")
	write := func() string {
		t.Helper()
		var stderr bytes.Buffer
		log, closer, err := New(Options{Program: "p", Container: "web1", Hook: "pre-mount", ConfigFile: cfg, Stderr: &stderr})
		if err != nil {
			t.Fatal(err)
		}
		log.Error("line")
		closer.Close()
		return stderr.String()
	}
	os.Symlink(victim, logPath)
	if got := write(); !strings.Contains(got, "is a symlink: refused") {
		t.Fatalf("default log as a symlink: %q", got)
	}
	os.Remove(logPath)
	os.Link(victim, logPath)
	if got := write(); !strings.Contains(got, "has 2 hard links: refused") {
		t.Fatalf("hard link: %q", got)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("the victim was written: %q", b)
	}
	os.Remove(logPath)
	if err := unix.Mkfifo(logPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := write(); !strings.Contains(got, "p: web1: pre-mount: error: line") {
		t.Fatalf("FIFO: %q", got)
	}
	os.Remove(logPath)
	os.WriteFile(logPath, nil, 0o640)
	if os.Geteuid() == 0 {
		os.Chown(logPath, 4242, 4242)
		if got := write(); !strings.Contains(got, "owned by uid 4242, not root: refused") {
			t.Fatalf("a user's file: %q", got)
		}
		os.Chown(logPath, 0, 0)
	}
	if got := write(); strings.Contains(got, "refused") {
		t.Fatalf("a plain log: %q", got)
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "ERROR") {
		t.Fatalf("a plain log was not written: %q", b)
	}
}

// lxc-start -o FILE: the hook reopens the file LXC has open through
// /proc/PID/fd, the very file, not whatever its path leads to now (here
// the file was unlinked and a symlink to a victim planted at its name).
func TestParentLogReopenedNotItsPath(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "start.log")
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	// The parent must look like LXC (its comm starts with lxc-).
	fake := filepath.Join(dir, "lxc-start")
	os.Symlink(sleep, fake)
	parent := exec.Command(fake, "60")
	parent.ExtraFiles = []*os.File{lf}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { parent.Process.Kill(); parent.Wait() }()
	for i := 0; i < 200; i++ { // until exec is done and comm is the new one
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", parent.Process.Pid)); strings.HasPrefix(string(b), "lxc-") {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	// The log's name now leads elsewhere: LXC's open file has none.
	os.Remove(logPath)
	os.Symlink(victim, logPath)
	var stderr bytes.Buffer
	log, closer, err := New(Options{Program: "p", Container: "web1", Hook: "pre-mount", ParentPID: parent.Process.Pid, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	log.Error("to LXC's own log")
	closer.Close()
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("the victim was written: %q", b)
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fd/3", parent.Process.Pid)); !strings.Contains(string(b), "to LXC's own log") {
		t.Fatalf("LXC's log: %q (stderr %q)", b, stderr.String())
	}
}
