package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

const sample = "# Changelog\n\nIntro.\n\n## Unreleased\n\n### New\n- one `thing`\n  continued\n\n## 0.1.0 - 2026-11-26\n\nThe first version.\n\n### Fixed\n- a fix\n"

func render(t *testing.T, in, version string) (string, error) {
	t.Helper()
	s, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	err = write(&b, s, options{Version: version, Maintainer: "A B <a@b.org>", Package: "p", Distribution: "unstable", Date: time.Unix(1795737600, 0)})
	return b.String(), err
}

func TestBetweenTags(t *testing.T) {
	got, err := render(t, sample, "0.1.0+git3.abcdef0")
	if err != nil {
		t.Fatal(err)
	}
	want := `p (0.1.0+git3.abcdef0) unstable; urgency=medium

  * New:
    - one thing continued

 -- A B <a@b.org>  Fri, 27 Nov 2026 00:00:00 +0000

p (0.1.0) unstable; urgency=medium

  * The first version.
  * Fixed:
    - a fix

 -- A B <a@b.org>  Thu, 26 Nov 2026 00:00:00 +0000
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestReleaseNeedsItsSection(t *testing.T) {
	// Tagged v0.2.0 but Unreleased not renamed: refused, naming the fix.
	if _, err := render(t, sample, "0.2.0"); err == nil || !strings.Contains(err.Error(), "rename") {
		t.Fatalf("err = %v", err)
	}
	// Tagged v0.1.0 while Unreleased has entries: refused.
	if _, err := render(t, sample, "0.1.0"); err == nil || !strings.Contains(err.Error(), "Unreleased") {
		t.Fatalf("err = %v", err)
	}
	released := strings.Replace(sample, "## Unreleased\n\n### New\n- one `thing`\n  continued\n", "## Unreleased\n", 1)
	got, err := render(t, released, "0.1.0")
	if err != nil || !strings.HasPrefix(got, "p (0.1.0) unstable") {
		t.Fatalf("%v\n%s", err, got)
	}
}

func TestNoUnreleasedSection(t *testing.T) {
	in := strings.Replace(sample, "## Unreleased\n\n### New\n- one `thing`\n  continued\n", "", 1)
	got, err := render(t, in, "0.1.0+git1.abcdef0")
	if err != nil || !strings.HasPrefix(got, "p (0.1.0+git1.abcdef0) unstable; urgency=medium\n\n  * Development build") {
		t.Fatalf("%v\n%s", err, got)
	}
}

func TestWrap(t *testing.T) {
	var b strings.Builder
	wrap(&b, "    - ", "      ", strings.Repeat("word ", 30))
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if len(l) > 78 || !strings.HasPrefix(l, "    ") {
			t.Fatalf("line %q", l)
		}
	}
}

func TestBadHeading(t *testing.T) {
	if _, err := parse(strings.NewReader("## 0.1.0\n")); err == nil {
		t.Fatal("a heading without a date was accepted")
	}
}

// The heading glued to the introduction's last line (issue 20): every note
// under it would go into no section and vanish from changelog.gz. Refused,
// naming the line; the same file with the line break back keeps them.
func TestGluedHeadingRefused(t *testing.T) {
	glued := strings.Replace(sample, "Intro.\n\n## Unreleased\n", "Intro, the headings\n`## Unreleased\n", 1)
	_, err := parse(strings.NewReader(glued))
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "glued") {
		t.Fatalf("a glued \"## Unreleased\": err = %v, want a refusal naming line 4", err)
	}
	// A heading right under text, without the blank line.
	tight := strings.Replace(sample, "Intro.\n\n## Unreleased\n", "Intro.\n## Unreleased\n", 1)
	if _, err := parse(strings.NewReader(tight)); err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "blank line") {
		t.Fatalf("a heading without a blank line before it: err = %v", err)
	}
	// Prose naming the headings in passing is not a heading.
	prose := strings.Replace(sample, "Intro.\n", "Intro: the headings\n`## Unreleased` and `## X.Y.Z - YYYY-MM-DD` are read.\n", 1)
	got, err := render(t, prose, "0.1.0+git3.abcdef0")
	if err != nil || !strings.Contains(got, "one thing continued") {
		t.Fatalf("prose naming the headings: %v\n%s", err, got)
	}
}

// The project's own CHANGELOG.md parses, and what it has under
// "## Unreleased" reaches the package's changelog of a build between tags.
func TestProjectChangelogKeepsUnreleased(t *testing.T) {
	f, err := os.Open("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := parse(f)
	if err != nil {
		t.Fatalf("CHANGELOG.md: %v", err)
	}
	var unreleasedItems int
	for _, sec := range s {
		if sec.Version == "" {
			for _, g := range sec.Groups {
				unreleasedItems += len(g.Items)
			}
		}
	}
	raw, _ := os.ReadFile("../../CHANGELOG.md")
	bullets := 0
	if _, rest, ok := strings.Cut(string(raw), "\n## Unreleased\n"); ok {
		next, _, _ := strings.Cut(rest, "\n## ")
		bullets = strings.Count(next, "\n- ")
	}
	if unreleasedItems != bullets {
		t.Fatalf("CHANGELOG.md has %d bullets under \"## Unreleased\", the Debian changelog would get %d", bullets, unreleasedItems)
	}
}
