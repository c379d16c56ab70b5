package lxclog

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
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
