// Package scripts holds the build tooling; this test checks the versions
// scripts/version.sh derives from git tags, in a scratch repository.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersionFromTags(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "scripts"), 0o755)
	b, err := os.ReadFile("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "scripts", "version.sh"), b, 0o755)
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	version := func() (string, string) {
		t.Helper()
		cmd := exec.Command("./scripts/version.sh")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "VERSION=", "COMMIT=")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("version.sh: %v", err)
		}
		f := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(f) != 2 {
			t.Fatalf("version.sh printed %q", out)
		}
		return f[0], f[1]
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-qm", "one")
	git("commit", "-q", "--allow-empty", "-m", "two")
	short := git("rev-parse", "--short=7", "HEAD")
	full := git("rev-parse", "HEAD")
	if v, c := version(); v != "0.0.0+git2."+short || c != full {
		t.Fatalf("no tag: %s %s", v, c)
	}
	git("tag", "-a", "v0.2.0", "-m", "0.2.0", "HEAD~1")
	if v, _ := version(); v != "0.2.0+git1."+short {
		t.Fatalf("one commit after v0.2.0: %s", v)
	}
	git("tag", "v0.3.0-rc1")
	if v, _ := version(); v != "0.3.0~rc1" {
		t.Fatalf("at v0.3.0-rc1: %s", v)
	}
	git("tag", "-a", "v0.3.0", "-m", "0.3.0") // annotated: describe prefers it to the rc on the same commit
	if v, _ := version(); v != "0.3.0" {
		t.Fatalf("at v0.3.0: %s", v)
	}
	os.WriteFile(filepath.Join(dir, "scripts", "version.sh"), append(b, '\n'), 0o755)
	if v, c := version(); v != "0.3.0" || c != full+"-dirty" {
		t.Fatalf("uncommitted change: %s %s", v, c)
	}
}
