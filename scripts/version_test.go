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

// scratchRepo is a new git repository with scripts/version.sh in it, and
// functions to run git and version.sh there.
func scratchRepo(t *testing.T) (dir string, script []byte, git func(...string) string, version func() (string, string)) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir = t.TempDir()
	os.Mkdir(filepath.Join(dir, "scripts"), 0o755)
	b, err := os.ReadFile("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "scripts", "version.sh"), b, 0o755)
	git = func(args ...string) string {
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
	version = func() (string, string) {
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
	return dir, b, git, version
}

func TestVersionFromTags(t *testing.T) {
	dir, b, git, version := scratchRepo(t)
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

// A clone without tags takes the newest release of CHANGELOG.md, counting
// the commits since the one that added its heading (the release commit);
// tags, where there are, still decide unless they are older.
func TestVersionFromChangelog(t *testing.T) {
	dir, _, git, version := scratchRepo(t)
	changelog := func(text string) {
		t.Helper()
		os.WriteFile(filepath.Join(dir, "CHANGELOG.md"), []byte("# Changelog\n\n"+text), 0o644)
		git("add", ".")
		git("commit", "-qm", "changelog")
	}
	changelog("## Unreleased\n\n- first things\n")
	if v, _ := version(); !strings.HasPrefix(v, "0.0.0+git1.") {
		t.Fatalf("no release in CHANGELOG.md: %s", v)
	}
	changelog("## 0.1.0 - 2026-11-26\n\n- first things\n")
	release := git("rev-parse", "HEAD")
	if v, _ := version(); v != "0.1.0" {
		t.Fatalf("at the commit that released 0.1.0: %s", v)
	}
	changelog("## Unreleased\n\n- more\n\n## 0.1.0 - 2026-11-26\n\n- first things\n")
	git("commit", "-q", "--allow-empty", "-m", "three")
	short := git("rev-parse", "--short=7", "HEAD")
	if v, _ := version(); v != "0.1.0+git2."+short {
		t.Fatalf("two commits after 0.1.0's heading: %s", v)
	}
	// Tags win where they are as new: v0.1.0 on another commit.
	git("tag", "-a", "v0.1.0", "-m", "0.1.0", release+"~1")
	if v, _ := version(); v != "0.1.0+git3."+short {
		t.Fatalf("tagged v0.1.0 three commits back: %s", v)
	}
	// A tag older than the CHANGELOG's release (a clone with old tags).
	git("tag", "-d", "v0.1.0")
	git("tag", "-a", "v0.0.9", "-m", "0.0.9", release+"~1")
	if v, _ := version(); v != "0.1.0+git2."+short {
		t.Fatalf("tag v0.0.9 older than CHANGELOG.md's 0.1.0: %s", v)
	}
	// A newer tag than the CHANGELOG's heading wins.
	git("tag", "v0.2.0-rc1")
	if v, _ := version(); v != "0.2.0~rc1" {
		t.Fatalf("at v0.2.0-rc1: %s", v)
	}
}
