package lxclog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func hookLine(t time.Time, container, level, hook, msg string) string {
	e := logrus.NewEntry(logrus.New()).WithFields(logrus.Fields{FieldContainer: container, FieldHook: hook})
	e.Time, e.Message = t, msg
	e.Level, _ = logrus.ParseLevel(strings.ToLower(level))
	b, _ := (&LXCFormatter{Program: "lxc-hook-loopimg", Category: "loopimg"}).Format(e)
	return string(b)
}

func TestParseLineReadsWhatTheFormatterWrites(t *testing.T) {
	at := time.Date(2026, 12, 2, 14, 15, 2, 68e6, time.UTC)
	line := strings.TrimSuffix(hookLine(at, "my web", "error", "pre-mount", `lower "/x - y" does not exist`), "\n")
	e, ok := ParseLine(line, "my web")
	if !ok || !e.Time.Equal(at) || e.Level != "ERROR" || e.Hook != "pre-mount" || e.Message != `lower "/x - y" does not exist` || e.Program != "lxc-hook-loopimg" {
		t.Fatalf("got %+v %v from %q", e, ok, line)
	}
	for _, other := range []string{
		"lxc-start web1 20261202141502.727 ERROR    start - ../src/lxc/start.c:__lxc_start:2107 - Failed to spawn container \"web1\"",
		strings.TrimSuffix(hookLine(at, "web10", "error", "pre-mount", "x"), "\n"),
		"lxc-hook-loopimg web1 garbage",
	} {
		if _, ok := ParseLine(other, "web1"); ok {
			t.Errorf("%q taken for a hook line of web1", other)
		}
	}
}

func writeLog(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.log")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLastError(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	lxcLine := func(at time.Time, msg string) string {
		return fmt.Sprintf("lxc-start web1 %s.%03d ERROR    start - start.c:1 - %s\n", at.Format("20060102150405"), at.Nanosecond()/1e6, msg)
	}
	p := writeLog(t,
		hookLine(t0, "web1", "error", "pre-mount", "old refusal"),
		hookLine(t0.Add(time.Minute), "web1", "error", "pre-mount", "the refusal"),
		lxcLine(t0.Add(time.Minute), "Failed to spawn container"),
		hookLine(t0.Add(time.Minute), "web1", "warning", "pre-mount", "a warning after it"),
		hookLine(t0.Add(2*time.Minute), "web2", "error", "pre-mount", "another container's"),
	)
	e, ok, err := LastError(p, "web1", time.Time{})
	if err != nil || !ok || e.Message != "the refusal" {
		t.Fatalf("no since: %+v %v %v", e, ok, err)
	}
	if e, ok, _ := LastError(p, "web1", t0.Add(30*time.Second)); !ok || e.Message != "the refusal" {
		t.Fatalf("since before it: %+v %v", e, ok)
	}
	if e, ok, _ := LastError(p, "web1", t0.Add(90*time.Second)); ok {
		t.Fatalf("since a start after it: %+v", e)
	}
	if _, ok, err := LastError(filepath.Join(t.TempDir(), "none.log"), "web1", time.Time{}); ok || err != nil {
		t.Fatalf("a missing log: %v %v", ok, err)
	}
}

// A large log is read from its end in chunks: lines across a chunk
// border are read whole, and reading stops at the last start.
func TestLastErrorAcrossChunks(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	var lines []string
	lines = append(lines, hookLine(t0, "web1", "error", "pre-mount", "the first refusal "+strings.Repeat("x", 300)))
	for i := 0; i < 3000; i++ { // about 400 KiB of LXC's own lines
		lines = append(lines, fmt.Sprintf("lxc-start web1 %s.000 WARN     cgfsng - cgfsng.c:3232 - %s\n", t0.Add(time.Duration(i+1)*time.Second).Format("20060102150405"), strings.Repeat("w", 80)))
	}
	p := writeLog(t, lines...)
	e, ok, err := LastError(p, "web1", time.Time{})
	if err != nil || !ok || !strings.HasPrefix(e.Message, "the first refusal xxx") || len(e.Message) != len("the first refusal ")+300 {
		t.Fatalf("got %q %v %v", e.Message, ok, err)
	}
	if _, ok, _ := LastError(p, "web1", t0.Add(time.Hour)); ok {
		t.Fatal("an error before the last start was reported")
	}
}

func TestMarkStarted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "web1")
	os.Mkdir(dir, 0o755)
	if !LastStart(dir).IsZero() {
		t.Fatal("a start before any")
	}
	before := time.Now().Add(-time.Second)
	MarkStarted(filepath.Join(dir, "config"), "web1", logrus.NewEntry(logrus.New()))
	first := LastStart(dir)
	if first.Before(before) {
		t.Fatalf("start recorded at %v", first)
	}
	// A config kept outside its container's directory (lxc-start -f):
	// nothing is written beside it.
	elsewhere := t.TempDir()
	MarkStarted(filepath.Join(elsewhere, "web1.conf"), "web1", logrus.NewEntry(logrus.New()))
	if _, err := os.Lstat(filepath.Join(elsewhere, StartedName)); err == nil {
		t.Fatal("a start recorded beside a config outside the container's directory")
	}
	// A symlink planted in its place is not followed.
	os.Remove(filepath.Join(dir, StartedName))
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, nil, 0o644)
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	os.Chtimes(target, old, old)
	os.Symlink(target, filepath.Join(dir, StartedName))
	MarkStarted(filepath.Join(dir, "config"), "web1", logrus.NewEntry(logrus.New()))
	if fi, _ := os.Stat(target); !fi.ModTime().Equal(old) {
		t.Fatal("MarkStarted followed a symlink")
	}
}

func TestNamesContainer(t *testing.T) {
	for _, tc := range []struct {
		argv string
		cwd  string
		want bool
	}{
		{"lxc-start -n web1", "/", true},
		{"lxc-start --name=web1 -d", "/", true},
		{"lxc-start -nweb1", "/", true},
		{"lxc-start web1", "/", true},
		{"lxc-start -n web1 -P /var/lib/lxc", "/", true},
		{"lxc-start -n web1 --lxcpath=/srv/lxc", "/", false},
		{"lxc-start -n web1 -P lxc", "/var/lib", true},
		{"lxc-start -n web1 -P lxc", "/srv", false},
		{"lxc-start -n web10", "/", false},
		{"lxc-start -n web2 -- web1", "/", false},
		// LXC's monitor: setproctitle made its argv one string.
		{"[lxc monitor] /var/lib/lxc web1", "/", false},
	} {
		argv := strings.Split(tc.argv, " ")
		if strings.HasPrefix(tc.argv, "[") {
			argv = []string{tc.argv, ""}
		}
		if got := namesContainer(argv, "web1", "/var/lib/lxc", tc.cwd); got != tc.want {
			t.Errorf("%q in %s: got %v, want %v", tc.argv, tc.cwd, got, tc.want)
		}
	}
}
