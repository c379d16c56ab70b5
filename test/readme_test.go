package test

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The README is what a new user pastes from (issue 20): its config
// snippets must work as they stand, and every command line it shows must
// be one the binaries accept. These tests read README.md itself, so the
// text cannot drift from the code.

// mdBlock is a fenced code block of README.md.
type mdBlock struct {
	lang  string   // the info string after the fence ("sh", or "")
	line  int      // README line of the first line inside the fence
	lines []string // its lines, the fence's indentation removed
}

// readme returns README.md's text and its fenced blocks.
func readme(t *testing.T) (string, []mdBlock) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []mdBlock
	var cur *mdBlock
	indent := ""
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		trimmed := strings.TrimLeft(l, " ")
		if strings.HasPrefix(trimmed, "```") {
			if cur == nil {
				indent = l[:len(l)-len(trimmed)]
				cur = &mdBlock{lang: strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), line: n + 1}
			} else {
				blocks = append(blocks, *cur)
				cur = nil
			}
			continue
		}
		if cur != nil {
			cur.lines = append(cur.lines, strings.TrimPrefix(l, indent))
		}
	}
	if cur != nil {
		t.Fatalf("README.md: the code block opened at line %d is never closed", cur.line-1)
	}
	return string(b), blocks
}

// commonConf is LXC's common container config, which lxc-create and init
// include.
const commonConf = "/usr/share/lxc/config/common.conf"

var configLine = regexp.MustCompile(`^(lxc\.[a-z0-9._-]+) = (.*)$`)

// configSnippets are the blocks that hold LXC config lines. Every line of
// one must be what LXC reads as meant: a config line, a comment on a line
// of its own, or a blank line. LXC has no trailing comments: in
// "lxc.rootfs.path = dir:/x   # a comment" the comment is part of the path.
func configSnippets(t *testing.T, blocks []mdBlock) []mdBlock {
	t.Helper()
	var out []mdBlock
	for _, b := range blocks {
		isConfig := false
		for _, l := range b.lines {
			if strings.HasPrefix(l, "lxc.") {
				isConfig = true
			}
		}
		if !isConfig {
			continue
		}
		for i, l := range b.lines {
			switch {
			case strings.TrimSpace(l) == "", strings.HasPrefix(l, "#"):
			case configLine.MatchString(l):
				if v := configLine.FindStringSubmatch(l)[2]; strings.Contains(v, "#") {
					t.Errorf("README.md line %d: %q has a comment after its value, which LXC reads as part of the value: put the comment on a line of its own", b.line+i, l)
				}
			default:
				t.Errorf("README.md line %d: %q in a config snippet is not a config line (\"lxc.KEY = VALUE\"), a comment or a blank line: it does not paste", b.line+i, l)
			}
		}
		out = append(out, b)
	}
	return out
}

// The example names the README's snippets use, which the test replaces by
// its own.
const (
	exampleDir      = "/var/lib/lxc/web1"
	exampleTemplate = "/srv/templates/debian.squashfs"
	exampleHookDir  = "/usr/share/lxc/hooks/"
)

// closeCommand is how the README says to close an unprivileged
// container's directory by hand.
var closeCommand = regexp.MustCompile("`chgrp ([0-9]+) " + regexp.QuoteMeta(exampleDir) + " && chmod ([0-7]+) " + regexp.QuoteMeta(exampleDir) + "`")

// Every config snippet of the README, written as a container's config with
// the test's own paths (its directory for /var/lib/lxc/web1, a copy of the
// suite's template for /srv/templates/debian.squashfs, the test build for
// /usr/share/lxc/hooks, the suite's ID block for the snippet's): the
// container boots, a write lands in the layer the snippet names and is
// there after a restart, and after each stop no loop device, no mount and
// no runtime record of it is left. An unprivileged snippet's container
// directory is closed as the README says to.
func TestReadmeConfigSnippetsBoot(t *testing.T) {
	requireEnv(t)
	text, blocks := readme(t)
	snippets := configSnippets(t, blocks)
	if t.Failed() {
		t.FailNow()
	}
	if len(snippets) == 0 {
		t.Fatal("README.md has no config snippet: this test reads the wrong file, or the README lost its examples")
	}
	kinds := map[bool]int{}
	for _, s := range snippets {
		unpriv := false
		for _, l := range s.lines {
			if strings.HasPrefix(l, "lxc.idmap") {
				unpriv = true
			}
		}
		kinds[unpriv]++
		t.Run(fmt.Sprintf("line%d", s.line), func(t *testing.T) {
			bootSnippet(t, text, s, unpriv)
		})
	}
	if kinds[false] == 0 || kinds[true] == 0 {
		t.Fatalf("README.md's config snippets: %d privileged, %d unprivileged; this test expects both", kinds[false], kinds[true])
	}
}

func bootSnippet(t *testing.T, text string, s mdBlock, unpriv bool) {
	dir := testDir(t)
	// Unprivileged: the container's root must reach its directory from /.
	if err := os.Chmod(workRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	tpl := filepath.Join(dir, "debian.squashfs")
	copyFile(t, tplSquash, tpl)
	lxcpath := filepath.Join(dir, "lxc")
	name := uniqueName("readme")
	c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name)}
	c.logFile = filepath.Join(c.dir, name+".log")
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.state() != "STOPPED" {
			exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
		}
		if t.Failed() {
			t.Logf("LXC log of %s:\n%s", c.name, lastLines(c.log(), 40))
		}
	})

	// The snippet with the test's paths, pasted into a config as a user
	// has one (LXC's common config, as lxc-create and init write it);
	// what the test's machine needs besides (no network bridge, no
	// AppArmor, a log the test reads) goes before it.
	var cfg strings.Builder
	if exists(commonConf) {
		fmt.Fprintf(&cfg, "lxc.include = %s\n", commonConf)
	}
	fmt.Fprintf(&cfg, "lxc.uts.name = %s\nlxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n", name)
	fmt.Fprintf(&cfg, "lxc.log.file = %s\nlxc.log.level = INFO\n", c.logFile)
	var idBase int64 = -1
	layer, rootfs := "", ""
	for _, l := range s.lines {
		m := configLine.FindStringSubmatch(l)
		if m == nil {
			cfg.WriteString(l + "\n")
			continue
		}
		key, val := m[1], m[2]
		val = strings.ReplaceAll(val, exampleDir, c.dir)
		val = strings.ReplaceAll(val, exampleTemplate, tpl)
		val = strings.ReplaceAll(val, exampleHookDir, binDir+"/")
		switch key {
		case "lxc.idmap":
			f := strings.Fields(val)
			if len(f) != 4 {
				t.Fatalf("README.md: %q is not \"lxc.idmap = u|g INSIDE OUTSIDE COUNT\"", l)
			}
			outside, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				t.Fatalf("README.md: %q: %v", l, err)
			}
			if idBase < 0 {
				idBase = outside
			}
			// The suite's block, at the same offset as the README's.
			f[2] = strconv.FormatInt(int64(unprivBase)+outside-idBase, 10)
			val = strings.Join(f, " ")
		case "lxc.rootfs.path":
			// The README says: an empty directory.
			rootfs = strings.TrimPrefix(val, "dir:")
			if err := os.MkdirAll(rootfs, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if strings.HasPrefix(key, "lxc.hook.") {
			f := strings.Fields(val)
			for i := range f[:len(f)-1] {
				if f[i] == "--image" || f[i] == "--upper" {
					layer = f[i+1]
				}
			}
		}
		for _, example := range []string{"/var/lib/lxc", "/srv/", "/usr/share/lxc", "web1"} {
			if strings.Contains(val, example) {
				t.Fatalf("README.md line %q names %s, an example path this test does not know how to replace: use %s, %s or %s in snippets", l, example, exampleDir, exampleTemplate, exampleHookDir)
			}
		}
		fmt.Fprintf(&cfg, "%s = %s\n", key, val)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "config"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("config from README.md line %d:\n%s", s.line, cfg.String())
	if unpriv {
		m := closeCommand.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("README.md shows an unprivileged config but no `chgrp GID %s && chmod MODE %s` saying how to close its directory", exampleDir, exampleDir)
		}
		gid, _ := strconv.ParseInt(m[1], 10, 64)
		if gid != idBase {
			t.Fatalf("README.md closes the directory with chgrp %d, but its snippet maps the container's root to %d", gid, idBase)
		}
		mode, _ := strconv.ParseUint(m[2], 8, 32)
		if err := os.Chown(c.dir, 0, int(unprivBase)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(c.dir, os.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
	}

	left := func(when string) {
		t.Helper()
		assertNoLoops(t, dir, when)
		if m := mountsUnder(dir); len(m) > 0 {
			t.Fatalf("%s: still mounted: %v", when, m)
		}
		if exists(c.runDir()) {
			t.Fatalf("%s: the runtime record %s is left", when, c.runDir())
		}
	}
	c.mustStart()
	if unpriv {
		if m := c.mustSh("cat /proc/self/uid_map"); !strings.Contains(m, strconv.FormatUint(uint64(unprivBase), 10)) {
			t.Fatalf("the unprivileged snippet's container runs with uid_map %q", m)
		}
	}
	c.mustSh("echo pasted > /root/from-readme && sync")
	if layer == "" || !exists(layer) {
		t.Fatalf("the writable layer the snippet names (%q) was not made", layer)
	}
	if unpriv {
		// The root is on the host's rootfs directory: what the
		// container's root wrote belongs to its mapped root there.
		if uid, _ := ownerOf(t, filepath.Join(rootfs, "root", "from-readme")); uid != unprivBase {
			t.Fatalf("the unprivileged container's file is owned by host uid %d, want %d", uid, unprivBase)
		}
	}
	c.stop(false)
	left("after the first lxc-stop")
	c.mustStart()
	if got := c.mustSh("cat /root/from-readme"); got != "pasted\n" {
		t.Fatalf("after a restart /root/from-readme is %q", got)
	}
	c.stop(false)
	left("after the second lxc-stop")
	if e := c.hookLogLines("ERROR"); len(e) > 0 {
		t.Fatalf("the hooks logged errors:\n%s", strings.Join(e, "\n"))
	}
}

// helpFlags are the flags a --help text lists ("  -name VALUE").
var helpFlag = regexp.MustCompile(`(?m)^  -([a-zA-Z][a-zA-Z0-9-]*)`)

// binaryHelp is what one binary accepts: its subcommands and, per
// subcommand ("" for the hook itself), its flags, read from --help.
type binaryHelp struct {
	subs  map[string]map[string]bool
	flags map[string]bool // every flag of the binary, any subcommand
}

func readHelp(t *testing.T, bin string) binaryHelp {
	t.Helper()
	h := binaryHelp{subs: map[string]map[string]bool{}, flags: map[string]bool{}}
	top, err := runBin(filepath.Join(binDir, bin), "--help")
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", bin, err, top)
	}
	m := regexp.MustCompile(`Run by hand: ` + regexp.QuoteMeta(bin) + ` ([a-z|-]+) `).FindStringSubmatch(top)
	if m == nil {
		t.Fatalf("%s --help does not list its commands (\"Run by hand: %s a|b|c\"):\n%s", bin, bin, top)
	}
	add := func(sub, text string) {
		h.subs[sub] = map[string]bool{}
		for _, f := range helpFlag.FindAllStringSubmatch(text, -1) {
			h.subs[sub][f[1]] = true
			h.flags[f[1]] = true
		}
	}
	add("", top)
	for _, sub := range strings.Split(m[1], "|") {
		out, err := runBin(filepath.Join(binDir, bin), sub, "--help")
		if err != nil {
			t.Fatalf("%s %s --help: %v\n%s", bin, sub, err, out)
		}
		add(sub, out)
	}
	return h
}

// commandArgs turns a README command line into argv: a trailing "# ..."
// comment, brackets of optional parts and the "..." of repeatable ones go.
func commandArgs(l string) []string {
	if i := strings.Index(l, " #"); i >= 0 {
		l = l[:i]
	}
	l = strings.NewReplacer("[", "", "]", "").Replace(l)
	var out []string
	for _, f := range strings.Fields(l) {
		if f = strings.TrimSuffix(f, "..."); f != "" {
			out = append(out, f)
		}
	}
	return out
}

var hookBinary = regexp.MustCompile(`^(?:/usr/share/lxc/hooks/|/usr/bin/)?(lxc-hook-(?:overlay|loopimg|aufs))$`)

// Every command line of the README that runs a hook binary (in sh blocks,
// "$ " lines of output blocks, and the hook lines of config snippets) is
// run with --help appended: the binary must parse every subcommand and
// flag of it (an unknown one exits 2) and answer with that subcommand's
// usage. Every flag the README's inline code shows must exist: after a
// binary or one of its commands, in that one's --help; on its own, in some
// --help of the binaries.
func TestReadmeCommandLinesParse(t *testing.T) {
	requireEnv(t)
	text, blocks := readme(t)
	help := map[string]binaryHelp{}
	for _, bin := range []string{"lxc-hook-overlay", "lxc-hook-loopimg", "lxc-hook-aufs"} {
		help[bin] = readHelp(t, bin)
	}

	checked := 0
	for _, b := range blocks {
		for i, l := range b.lines {
			where := fmt.Sprintf("README.md line %d", b.line+i)
			var argv []string
			switch {
			case b.lang == "sh":
				argv = commandArgs(l)
			case strings.HasPrefix(l, "$ "):
				argv = commandArgs(strings.TrimPrefix(l, "$ "))
			default:
				if m := configLine.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[1], "lxc.hook.") {
					argv = commandArgs(m[2])
				}
			}
			if len(argv) == 0 {
				continue
			}
			m := hookBinary.FindStringSubmatch(argv[0])
			if m == nil {
				continue
			}
			bin, args := m[1], argv[1:]
			want := "Usage: " + bin + " ["
			if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
				want = "Usage: " + bin + " " + args[0] + " "
			}
			out, err := runBin(filepath.Join(binDir, bin), append(args, "--help")...)
			if err != nil || !strings.HasPrefix(out, want) {
				t.Errorf("%s: %q is not a command line %s accepts (run with --help: %v):\n%s", where, l, bin, err, lastLines(out, 3))
			}
			checked++
		}
	}
	if checked < 10 {
		t.Fatalf("only %d command lines found in README.md's code blocks: the test no longer finds them", checked)
	}

	// Inline code, outside the fenced blocks; a code span may go on over
	// a line break (which reads as a blank).
	var prose strings.Builder
	inFence := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimLeft(l, " "), "```") {
			inFence = !inFence
			continue
		}
		if !inFence {
			prose.WriteString(l + " ")
		}
	}
	allFlags := map[string]bool{}
	subFlags := map[string]map[string]bool{}
	for _, h := range help {
		for f := range h.flags {
			allFlags[f] = true
		}
		for sub, fs := range h.subs {
			if subFlags[sub] == nil {
				subFlags[sub] = map[string]bool{}
			}
			for f := range fs {
				subFlags[sub][f] = true
			}
		}
	}
	spans := regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(prose.String(), -1)
	spansChecked := 0
	for _, sm := range spans {
		span := strings.ReplaceAll(sm[1], `\|`, "|")
		tokens := commandArgs(span)
		if len(tokens) == 0 {
			continue
		}
		var known map[string]bool
		what := ""
		rest := tokens[1:]
		switch {
		case hookBinary.MatchString(tokens[0]):
			bin := hookBinary.FindStringSubmatch(tokens[0])[1]
			sub := ""
			if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
				sub = rest[0]
				if _, ok := help[bin].subs[sub]; !ok {
					t.Errorf("README.md shows `%s`: %s has no command %q", sm[1], bin, sub)
					continue
				}
				rest = rest[1:]
			}
			known, what = help[bin].subs[sub], strings.TrimSpace(bin+" "+sub)
		case subFlags[tokens[0]] != nil && tokens[0] != "":
			known, what = subFlags[tokens[0]], tokens[0]
		case strings.HasPrefix(tokens[0], "--"):
			known, what, rest = allFlags, "any binary", tokens
		default:
			continue
		}
		for _, tok := range rest {
			if tok == "--" {
				// lxc-create passes what follows "--" to the template
				// script: the binaries' lxc-template command.
				known, what = subFlags["lxc-template"], "lxc-template"
				continue
			}
			if !strings.HasPrefix(tok, "--") {
				continue
			}
			flag, _, _ := strings.Cut(strings.TrimPrefix(tok, "--"), "=")
			if flag == "help" {
				continue // every command answers --help (package flag)
			}
			if !known[flag] {
				t.Errorf("README.md shows `%s`: --%s is not a flag of %s (see its --help)", sm[1], flag, what)
			}
			spansChecked++
		}
	}
	if spansChecked < 20 {
		t.Fatalf("only %d flags found in README.md's inline code: the test no longer finds them", spansChecked)
	}
	t.Logf("%d command lines and %d flags in inline code checked against the binaries' --help", checked, spansChecked)
}

// Every test and benchmark the README names exists, and every file or
// directory of the repository it names in code or links to is there.
func TestReadmeNamesExist(t *testing.T) {
	text, _ := readme(t)
	root := repoRoot()
	funcs := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "out") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range regexp.MustCompile(`(?m)^func ((?:Test|Benchmark)\w+)\(`).FindAllStringSubmatch(string(b), -1) {
			funcs[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`\b((?:Test|Benchmark)[A-Z]\w*)`).FindAllStringSubmatch(text, -1)
	for _, m := range named {
		if !funcs[m[1]] {
			t.Errorf("README.md names %s, which no _test.go file of the repository defines", m[1])
		}
	}
	repoPath := regexp.MustCompile("(?:`|\\]\\()((?:pkg|test|cmd|scripts|docs|bench|packaging)/[A-Za-z0-9_./-]*)[`)]")
	paths := repoPath.FindAllStringSubmatch(text, -1)
	for _, m := range paths {
		if !exists(filepath.Join(root, strings.TrimSuffix(m[1], "/"))) {
			t.Errorf("README.md names %s, which is not in the repository", m[1])
		}
	}
	if len(named) < 3 || len(paths) < 5 {
		t.Fatalf("README.md: %d test names and %d repository paths found; the patterns no longer match it", len(named), len(paths))
	}
}
