// Command debchangelog writes the Debian changelog of the lxc-hooks package
// from CHANGELOG.md, the changelog written for sysadmins, so that the two
// never disagree. The "## Unreleased" section becomes the entry of the
// version being built (a build between tags); "## X.Y.Z - YYYY-MM-DD"
// sections become entries of their own.
//
//	go run ./scripts/debchangelog -version 0.2.0+git3.1a2b3c4 \
//	    -maintainer "Name <mail>" -date 1795737600 < CHANGELOG.md
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
)

func main() {
	version := flag.String("version", "", "the version being built (scripts/version.sh)")
	maintainer := flag.String("maintainer", "", `"Name <mail>" in every entry's trailer`)
	date := flag.Int64("date", 0, "Unix time of the entry of an unreleased version (the commit's time)")
	pkg := flag.String("package", "lxc-hooks", "the package name")
	dist := flag.String("distribution", "unstable", "the distribution of every entry")
	flag.Parse()
	if *version == "" || *maintainer == "" {
		fmt.Fprintln(os.Stderr, "debchangelog: -version and -maintainer are required")
		os.Exit(2)
	}
	sections, err := parse(os.Stdin)
	if err == nil {
		err = write(os.Stdout, sections, options{
			Version: *version, Maintainer: *maintainer, Date: time.Unix(*date, 0),
			Package: *pkg, Distribution: *dist,
		})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "debchangelog:", err)
		os.Exit(1)
	}
}

// section is one "## " section of CHANGELOG.md.
type section struct {
	Version string // "" for Unreleased
	Date    time.Time
	Groups  []group
}

// group is the entries under one "### " heading ("" before any).
type group struct {
	Title string
	Items []string
}

func (s *section) empty() bool {
	for _, g := range s.Groups {
		if len(g.Items) > 0 {
			return false
		}
	}
	return true
}

var (
	releaseHeading = regexp.MustCompile(`^## +v?([0-9][0-9A-Za-z.+~]*) +[-–—] +([0-9]{4}-[0-9]{2}-[0-9]{2}) *$`)
	unreleased     = regexp.MustCompile(`^## +Unreleased *$`)
)

// parse reads the sections of CHANGELOG.md. Items are "- " bullets with
// indented continuation lines; a plain paragraph is an item too.
//
// A heading must stand on a line of its own after a blank line. One glued
// to the text before it (an edit that lost a line break, leaving
// "`## Unreleased" at the end of the introduction) is text to this parser
// and to Markdown alike, so every note under it would silently go into no
// section and vanish from the package's changelog: refused, naming the line.
func parse(r io.Reader) ([]section, error) {
	var out []section
	var cur *section
	var item *string
	sc := bufio.NewScanner(r)
	n := 0
	prev := ""
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t")
		before := prev
		prev = line
		if h, ok := gluedHeading(line); ok && !strings.HasPrefix(line, "## ") {
			return nil, fmt.Errorf("CHANGELOG.md line %d: %q is a section heading glued to other text: put %q on a line of its own, after a blank line", n, line, h)
		}
		switch {
		case strings.HasPrefix(line, "## "):
			item = nil
			if n > 1 && before != "" {
				return nil, fmt.Errorf("CHANGELOG.md line %d: heading %q follows text on line %d without a blank line between: add one", n, line, n-1)
			}
			if unreleased.MatchString(line) {
				out = append(out, section{})
			} else if m := releaseHeading.FindStringSubmatch(line); m != nil {
				d, err := time.Parse("2006-01-02", m[2])
				if err != nil {
					return nil, fmt.Errorf("CHANGELOG.md line %d: date %q: %v", n, m[2], err)
				}
				out = append(out, section{Version: m[1], Date: d})
			} else {
				return nil, fmt.Errorf(`CHANGELOG.md line %d: %q is neither "## Unreleased" nor "## X.Y.Z - YYYY-MM-DD"`, n, line)
			}
			cur = &out[len(out)-1]
			cur.Groups = []group{{}}
		case cur == nil:
			// the file's title and introduction
		case strings.HasPrefix(line, "### "):
			item = nil
			cur.Groups = append(cur.Groups, group{Title: strings.TrimSpace(line[4:])})
		case line == "":
			item = nil
		case strings.HasPrefix(line, "- ") || strings.HasPrefix(line, "* "):
			g := &cur.Groups[len(cur.Groups)-1]
			g.Items = append(g.Items, plain(line[2:]))
			item = &g.Items[len(g.Items)-1]
		case item != nil:
			*item += " " + plain(line)
		default:
			g := &cur.Groups[len(cur.Groups)-1]
			g.Items = append(g.Items, plain(line))
			item = &g.Items[len(g.Items)-1]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("CHANGELOG.md has no version sections")
	}
	return out, nil
}

// gluedHeading reports whether line, which does not start with "## ", is a
// section heading with something stuck in front of it: "`## Unreleased",
// "text ## 0.2.0 - 2027-01-02". Prose that names a heading in passing
// ("`## Unreleased` and ...") is not one: the rest of the line must be the
// whole heading.
func gluedHeading(line string) (string, bool) {
	i := strings.Index(line, "## ")
	if i < 0 {
		return "", false
	}
	h := line[i:]
	return h, unreleased.MatchString(h) || releaseHeading.MatchString(h)
}

// plain drops Markdown's inline marks, which a Debian changelog shows
// verbatim.
func plain(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "`", "")
	s = strings.ReplaceAll(s, "**", "")
	return s
}

type options struct {
	Version, Maintainer, Package, Distribution string
	Date                                       time.Time
}

// write emits the entries, newest first. The top entry always carries the
// version being built, as dpkg and lintian expect.
func write(w io.Writer, sections []section, o options) error {
	released := map[string]bool{}
	for _, s := range sections {
		if s.Version != "" {
			released[s.Version] = true
		}
	}
	// A version with a local part (0.2.0+git5.1a2b3c4, 0.0.0+unknown) is a
	// build between releases; a plain one comes from a release tag.
	dev := strings.Contains(o.Version, "+")
	var entries []section
	for _, s := range sections {
		if s.Version != "" {
			entries = append(entries, s)
			continue
		}
		switch {
		case released[o.Version] && !s.empty():
			return fmt.Errorf("version %s is released, but CHANGELOG.md still has entries under \"## Unreleased\": move them into the %s section", o.Version, o.Version)
		case released[o.Version]:
		case !dev:
			return fmt.Errorf("version %s (a release tag) has no \"## %s - YYYY-MM-DD\" section in CHANGELOG.md: rename \"## Unreleased\"", o.Version, o.Version)
		default:
			s.Version, s.Date = o.Version, o.Date
			entries = append(entries, s)
		}
	}
	if len(entries) == 0 || entries[0].Version != o.Version {
		if !dev {
			return fmt.Errorf("version %s (a release tag) is not the newest section of CHANGELOG.md", o.Version)
		}
		// A build between tags with no Unreleased section yet.
		note := section{Version: o.Version, Date: o.Date, Groups: []group{{Items: []string{"Development build; CHANGELOG.md lists no change since the last release yet."}}}}
		entries = append([]section{note}, entries...)
	}
	bw := bufio.NewWriter(w)
	for i, s := range entries {
		if i > 0 {
			fmt.Fprintln(bw)
		}
		fmt.Fprintf(bw, "%s (%s) %s; urgency=medium\n\n", o.Package, s.Version, o.Distribution)
		for _, g := range s.Groups {
			if len(g.Items) == 0 {
				continue
			}
			if g.Title == "" {
				for _, it := range g.Items {
					wrap(bw, "  * ", "    ", it)
				}
				continue
			}
			fmt.Fprintf(bw, "  * %s:\n", g.Title)
			for _, it := range g.Items {
				wrap(bw, "    - ", "      ", it)
			}
		}
		fmt.Fprintf(bw, "\n -- %s  %s\n", o.Maintainer, s.Date.UTC().Format(time.RFC1123Z))
	}
	return bw.Flush()
}

// wrap writes text in lines of at most 78 columns (longer words stay whole).
func wrap(w io.Writer, first, rest, text string) {
	prefix, line := first, ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(prefix)+len(line)+1+len(word) > 78 {
			fmt.Fprintln(w, prefix+line)
			prefix, line = rest, ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	fmt.Fprintln(w, prefix+line)
}
