package admin

import (
	"bytes"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var allKinds = []Kind{
	{Program: "lxc-hook-overlay"},
	{Program: "lxc-hook-loopimg", Image: true},
	{Program: "lxc-hook-aufs"},
}

// Every flag of every command is in the script, and every flag's value
// has a completion kind (the generator fails on one that has none).
func TestCompletionCoversEveryFlag(t *testing.T) {
	for _, k := range allKinds {
		var b bytes.Buffer
		if err := writeBashCompletion(k, &b); err != nil {
			t.Fatalf("%s: %v", k.Program, err)
		}
		script := b.String()
		for _, c := range commands(k) {
			if _, ok := commandArgs[c.name]; !ok {
				t.Errorf("%s %s: no entry in commandArgs", k.Program, c.name)
			}
			fs := completionFlags(k, c)
			if len(fs) == 0 && c.name != "manpage" && c.name != "completion" {
				t.Errorf("%s %s: no flags seen: the command did not reach parse", k.Program, c.name)
			}
			for _, f := range fs {
				if !strings.Contains(script, flagWord(f.Name)+" ") && !strings.Contains(script, flagWord(f.Name)+"\"") {
					t.Errorf("%s %s: %s is not in the script", k.Program, c.name, flagWord(f.Name))
				}
			}
		}
		if k.Program == "lxc-hook-loopimg" && !strings.Contains(script, "\tresize)") {
			t.Error("loopimg's script has no resize")
		}
		if k.Program != "lxc-hook-loopimg" && strings.Contains(script, "\tresize)") {
			t.Errorf("%s's script offers resize, which only lxc-hook-loopimg has", k.Program)
		}
	}
	if inspectFlags != nil {
		t.Fatal("inspectFlags left set: commands would stop at their parse")
	}
}

// complete runs bash with the completion script loaded, as a shell does at
// TAB with the line words, and returns COMPREPLY.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c",
		`source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _lxc_hook_loopimg; printf '%s\n' "${COMPREPLY[@]}"`,
		"bash", script)
	cmd.Args = append(cmd.Args, words...)
	cmd.Env = []string{"PATH=/nonexistent"} // no lxc-config: the lxcpath comes from -P
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v: %s", err, out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	return got
}

func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "lxc-hook-loopimg")
	var b bytes.Buffer
	if err := writeBashCompletion(Kind{Program: "lxc-hook-loopimg", Image: true}, &b); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(script, b.Bytes(), 0o644)
	lxcpath := filepath.Join(dir, "lxc")
	for _, n := range []string{"web1", "web2", "db"} {
		os.MkdirAll(filepath.Join(lxcpath, n), 0o755)
		os.WriteFile(filepath.Join(lxcpath, n, "config"), nil, 0o644)
	}
	os.MkdirAll(filepath.Join(lxcpath, "not-a-container"), 0o755)
	os.WriteFile(filepath.Join(dir, "debian.squashfs"), nil, 0o644)

	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"lxc-hook-loopimg", "st"}, "status"},
		{[]string{"lxc-hook-loopimg", "re"}, "release resize"},
		{[]string{"lxc-hook-loopimg", "resize", "--s"}, "--size"},
		{[]string{"lxc-hook-loopimg", "init", "--pre"}, "--preallocate"},
		{[]string{"lxc-hook-loopimg", "status", "-P", lxcpath, ""}, "db web1 web2"},
		{[]string{"lxc-hook-loopimg", "status", "--lxcpath", "=", lxcpath, "db", "w"}, "web1 web2"},
		{[]string{"lxc-hook-loopimg", "resize", "-P", lxcpath, "web"}, "web1 web2"},
		// resize takes one NAME: nothing after it; --size takes a value.
		{[]string{"lxc-hook-loopimg", "resize", "-P", lxcpath, "web1", ""}, ""},
		{[]string{"lxc-hook-loopimg", "resize", "-P", lxcpath, "--size", ""}, ""},
		// copy SRC DST: SRC a container, DST a new name.
		{[]string{"lxc-hook-loopimg", "copy", "-P", lxcpath, "d"}, "db"},
		{[]string{"lxc-hook-loopimg", "copy", "-P", lxcpath, "db", ""}, ""},
		{[]string{"lxc-hook-loopimg", "template", "x.erofs", "--format", "squashfs-l"}, "squashfs-lz4"},
		{[]string{"lxc-hook-loopimg", "template", "x.erofs", "--format", "=", "erofs-"}, "erofs-lz4 erofs-lz4hc"},
		{[]string{"lxc-hook-loopimg", "init", "web3", "--template", filepath.Join(dir, "deb")}, filepath.Join(dir, "debian.squashfs")},
		{[]string{"lxc-hook-loopimg", "convert", "-P", lxcpath, "we"}, "web1 web2"},
		{[]string{"lxc-hook-loopimg", "completion", ""}, "bash"},
		// The hook's own flags at the top.
		{[]string{"lxc-hook-loopimg", "--ver"}, "--version"},
	} {
		got := complete(t, script, tc.words...)
		if strings.Join(sorted(got), " ") != tc.want {
			t.Errorf("%q: COMPREPLY %q, want %q", strings.Join(tc.words, " "), got, tc.want)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// A command's flags are read without running it: nothing after the parse.
func TestCompletionFlagsRunNothing(t *testing.T) {
	ran := false
	c := command{name: "x", run: func(k Kind, args []string, stdout, _ io.Writer) error {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.String("size", "", "`SIZE`")
		if _, err := parse(fs, args); err != nil {
			return err
		}
		ran = true
		return nil
	}}
	fs := completionFlags(Kind{Program: "lxc-hook-loopimg"}, c)
	if ran || len(fs) != 1 || fs[0].Name != "size" {
		t.Fatalf("ran %v, flags %v", ran, fs)
	}
}
