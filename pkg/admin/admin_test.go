package admin

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"
)

func TestParseHookLine(t *testing.T) {
	h, err := parseHookLine("/usr/share/lxc/hooks/lxc-hook-loopimg --lower /t/a.sqfs --lower=/t/b --size 2G --preallocate --log-level debug", "/var/lib/lxc/web1/config")
	if err != nil || h.Program != "lxc-hook-loopimg" || strings.Join(h.Lowers, ",") != "/t/a.sqfs,/t/b" || h.Size != "2G" || !h.Preallocate {
		t.Fatalf("%+v %v", h, err)
	}
	if h.Image != "/var/lib/lxc/web1/layer.img" || h.RunDir != "/run/lxc-hooks" {
		t.Fatalf("defaults: %+v", h)
	}
	o, err := parseHookLine("/x/lxc-hook-overlay --upper /srv/l", "/var/lib/lxc/web1/config")
	if err != nil || o.Upper != "/srv/l" || o.Image != "" {
		t.Fatalf("%+v %v", o, err)
	}
	if _, err := parseHookLine("/usr/share/lxc/hooks/mountecryptfsroot", "/c"); err != errNotOurs {
		t.Fatalf("a foreign hook taken for ours: %v", err)
	}
	if _, err := parseHookLine("/h/lxc-hook-loopimg --size lots", "/c/config"); err == nil || !strings.Contains(err.Error(), `--size "lots"`) {
		t.Fatalf("a bad hook line: %v", err)
	}
}

func TestLoadContainerFindsOurHookAmongOthers(t *testing.T) {
	lxcpath := t.TempDir()
	os.MkdirAll(filepath.Join(lxcpath, "web1"), 0o755)
	os.WriteFile(filepath.Join(lxcpath, "web1", "config"), []byte("lxc.rootfs.path = dir:/r\nlxc.hook.pre-mount = /usr/share/lxc/hooks/mountecryptfsroot\nlxc.hook.pre-mount = /h/lxc-hook-overlay\n"), 0o644)
	c, err := loadContainer(lxcpath, "web1")
	if err != nil || c.Hook.Program != "lxc-hook-overlay" || c.Hook.Upper != filepath.Join(lxcpath, "web1", "layer") || strings.Join(c.Hook.Lowers, ",") != "/r" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestStatusJSONIsValidAndStable(t *testing.T) {
	name := "we\"b\n1\xff\xfe<&>"
	var buf bytes.Buffer
	err := writeStatusJSON(&buf, []Status{{Name: name, State: "RUNNING", Hook: "lxc-hook-loopimg", Templates: []string{"/t\\x", "/p/it's \"q\"\x80"},
		Layer: Layer{Kind: "image", Path: "/i\tj"}, CapBytes: 1 << 30, Loops: []LoopStatus{{Device: "/dev/loop1", Role: "template", Backing: "/t", Shared: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	if !utf8.Valid(out) {
		t.Fatalf("not UTF-8: %q", out)
	}
	var v struct {
		Containers []map[string]interface{} `json:"containers"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	c := v.Containers[0]
	for _, k := range []string{"name", "state", "hook", "config", "templates", "layer", "cap_bytes", "used_bytes", "allocated_bytes", "loop_devices", "holders", "ephemeral", "unprivileged", "idmap", "error", "untrusted"} {
		if _, ok := c[k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}
	// Bytes that are not UTF-8 come out as U+FFFD; everything else exactly.
	if c["name"] != "we\"b\n1\ufffd\ufffd<&>" || c["cap_bytes"].(float64) != 1<<30 || c["templates"].([]interface{})[1] != "/p/it's \"q\"\ufffd" {
		t.Fatalf("%q", c)
	}
	if l := c["layer"].(map[string]interface{}); l["kind"] != "image" || l["path"] != "/i\tj" {
		t.Fatalf("layer %v", l)
	}
	if d := c["loop_devices"].([]interface{})[0].(map[string]interface{}); d["device"] != "/dev/loop1" || d["shared"] != true || d["role"] != "template" || d["backing"] != "/t" {
		t.Fatalf("loop %v", d)
	}
	buf.Reset()
	writeStatusJSON(&buf, nil)
	if strings.TrimSpace(buf.String()) != `{
  "containers": []
}` {
		t.Fatalf("no containers: %s", buf.String())
	}
}

func TestUpdateSizeFlag(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	in := "lxc.uts.name = a\n" +
		"lxc.hook.pre-mount = /h/lxc-hook-loopimg --lower /t --size  32M\n" +
		"lxc.hook.stop = '/my hooks/lxc-hook-loopimg' --size=2G --lower '/t/it'\\''s here'\n" +
		"lxc.hook.post-stop = /h/lxc-hook-loopimg --lower \"/t x\" -size 2G --image /i\n" +
		"lxc.hook.start-host = /usr/bin/other --size 2G\n" +
		"# lxc.hook.pre-mount = /h/lxc-hook-loopimg --size 2G in a comment stays\n"
	os.WriteFile(cfg, []byte(in), 0o604)
	if err := updateSizeFlag(&container{Config: cfg}, "48M"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(cfg)
	want := "lxc.uts.name = a\n" +
		"lxc.hook.pre-mount = /h/lxc-hook-loopimg --lower /t --size 48M\n" +
		"lxc.hook.stop = '/my hooks/lxc-hook-loopimg' --size=48M --lower '/t/it'\\''s here'\n" +
		"lxc.hook.post-stop = /h/lxc-hook-loopimg --lower '/t x' -size 48M --image /i\n" +
		"lxc.hook.start-host = /usr/bin/other --size 2G\n" +
		"# lxc.hook.pre-mount = /h/lxc-hook-loopimg --size 2G in a comment stays\n"
	if string(b) != want {
		t.Fatalf("got\n%s", b)
	}
	// What was written parses back to the same hook.
	for _, l := range strings.Split(string(b), "\n")[1:4] {
		_, val, _ := strings.Cut(l, "=")
		h, err := parseHookLine(strings.TrimSpace(val), cfg)
		if err != nil || h.Size != "48M" {
			t.Fatalf("%q: %+v %v", l, h, err)
		}
	}
	if fi, _ := os.Stat(cfg); fi.Mode().Perm() != 0o604 {
		t.Fatalf("mode %v, want the config's own 0604", fi.Mode())
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".config*")); len(m) != 0 {
		t.Fatalf("temporary files left: %v", m)
	}
}

// A symlinked config (kept elsewhere) is written through to its target;
// the link stays a link.
func TestUpdateSizeFlagThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "elsewhere"), 0o755)
	os.Mkdir(filepath.Join(dir, "c"), 0o755)
	real := filepath.Join(dir, "elsewhere", "c.conf")
	os.WriteFile(real, []byte("lxc.hook.pre-mount = /h/lxc-hook-loopimg --size 2G\n"), 0o640)
	os.Chown(real, 1234, 5678)
	link := filepath.Join(dir, "c", "config")
	os.Symlink("../elsewhere/c.conf", link)
	if err := updateSizeFlag(&container{Config: link}, "3G"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(real)
	if string(b) != "lxc.hook.pre-mount = /h/lxc-hook-loopimg --size 3G\n" {
		t.Fatalf("target: %q", b)
	}
	fi, _ := os.Stat(real)
	if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 1234 || st.Gid != 5678) || fi.Mode().Perm() != 0o640 {
		t.Fatalf("owner/mode not kept: %d:%d %v", st.Uid, st.Gid, fi.Mode())
	}
}

// A loopimg line sh would expand is refused with the line, and the
// config is left alone.
func TestUpdateSizeFlagRefusesExpansions(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config")
	in := "lxc.hook.pre-mount = /h/lxc-hook-loopimg --image $HOME/i --size 2G\n"
	os.WriteFile(cfg, []byte(in), 0o640)
	err := updateSizeFlag(&container{Config: cfg}, "3G")
	if err == nil || !strings.Contains(err.Error(), "lxc.hook.pre-mount = /h/lxc-hook-loopimg --image $HOME/i") || !strings.Contains(err.Error(), "not changed") {
		t.Fatalf("%v", err)
	}
	if b, _ := os.ReadFile(cfg); string(b) != in {
		t.Fatal("changed")
	}
}

func TestParseHookLineQuoted(t *testing.T) {
	h, err := parseHookLine(`'/opt/my hooks/lxc-hook-loopimg' --lower "/srv/my tpl/a.sqfs" --image '/srv/it'\''s/l.img' --size 96M`, "/c/config")
	if err != nil || h.Binary != "/opt/my hooks/lxc-hook-loopimg" || h.Lowers[0] != "/srv/my tpl/a.sqfs" || h.Image != "/srv/it's/l.img" || h.Size != "96M" {
		t.Fatalf("%+v %v", h, err)
	}
	if _, err := parseHookLine(`/h/lxc-hook-loopimg --image /i/$(touch /tmp/x)`, "/c/config"); err == nil || !strings.Contains(err.Error(), "expand") {
		t.Fatalf("an expansion: %v", err)
	}
	if _, err := parseHookLine(`/h/lxc-hook-loopimg --size 96 M`, "/c/config"); err == nil {
		t.Fatal("a stray word accepted")
	}
}

// status without names lists a container whose hook line it cannot read,
// with the reason, instead of leaving it out.
func TestContainersListsBrokenOnes(t *testing.T) {
	lxcpath := t.TempDir()
	for name, cfg := range map[string]string{
		"good":  "lxc.hook.pre-mount = /h/lxc-hook-overlay\n",
		"bad":   "lxc.hook.pre-mount = /h/lxc-hook-loopimg --image $HOME/x\n",
		"other": "lxc.hook.pre-mount = /usr/share/lxc/hooks/mountecryptfsroot\n",
	} {
		os.MkdirAll(filepath.Join(lxcpath, name), 0o755)
		os.WriteFile(filepath.Join(lxcpath, name, "config"), []byte(cfg), 0o644)
	}
	cs, err := containers(lxcpath)
	if err != nil || len(cs) != 2 || cs[0].Name != "bad" || cs[1].Name != "good" {
		t.Fatalf("%v %v", cs, err)
	}
	if cs[0].Err == nil || !strings.Contains(cs[0].Err.Error(), "lxc.hook.pre-mount = /h/lxc-hook-loopimg --image $HOME/x") || cs[1].Err != nil {
		t.Fatalf("errors: %v / %v", cs[0].Err, cs[1].Err)
	}
}

// A mistyped command run by hand is named, with the command meant and the
// list, exit 2; never taken for hook arguments.
func TestUnknownCommand(t *testing.T) {
	overlay := Kind{Program: "lxc-hook-overlay"}
	loopimg := Kind{Program: "lxc-hook-loopimg", Image: true}
	for _, tc := range []struct {
		k          Kind
		word, want string
	}{
		{overlay, "stauts", "lxc-hook-overlay: unknown command stauts; did you mean status? (commands: init, status, release, copy, template, convert, migrate, lxc-template, completion, manpage; each with --help; as an LXC hook: lxc-hook-overlay --help)\n"},
		{loopimg, "resze", "lxc-hook-loopimg: unknown command resze; did you mean resize? (commands: init, status, resize, release, copy, template, convert, migrate, lxc-template, completion, manpage;"},
		{loopimg, "templ", "did you mean template?"},
		{loopimg, "cpy", "did you mean copy?"},
		{loopimg, "frobnicate", "lxc-hook-loopimg: unknown command frobnicate (commands: init,"},
		{loopimg, "stat", "did you mean status?"},
		{loopimg, "re", "lxc-hook-loopimg: unknown command re (commands:"}, // resize or release: no guess
		{overlay, "resize", "lxc-hook-overlay: lxc-hook-overlay has no command resize: only lxc-hook-loopimg's image layers have a cap to resize (commands: init, status, release,"},
	} {
		var out, errb bytes.Buffer
		code := Main(tc.k, []string{tc.word, "web1"}, &out, &errb)
		if code != 2 || out.Len() != 0 || !strings.HasPrefix(errb.String(), strings.TrimSuffix(tc.want, "\n")) && !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.k.Program, tc.word, code, out.String(), errb.String(), tc.want)
		}
		if strings.Contains(errb.String(), "hook") && strings.Contains(errb.String(), "lxc.hook.version") {
			t.Errorf("%s: the hook-argument error: %q", tc.word, errb.String())
		}
		if strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%s: not one line: %q", tc.word, errb.String())
		}
	}
	if got := strings.Join(CommandNames(overlay), " "); got != "init status release copy template convert migrate lxc-template completion manpage" {
		t.Errorf("overlay's commands: %s", got)
	}
	if got := strings.Join(CommandNames(loopimg), " "); got != "init status resize release copy template convert migrate lxc-template completion manpage" {
		t.Errorf("loopimg's commands: %s", got)
	}
}

// Every command has --help, and the man page has a section for each
// command the binary has, and none for one it has not.
func TestManpageDocumentsEveryCommand(t *testing.T) {
	for _, k := range []Kind{{Program: "lxc-hook-overlay"}, {Program: "lxc-hook-loopimg", Image: true}, {Program: "lxc-hook-aufs"}} {
		var page, errb bytes.Buffer
		if code := Main(k, []string{"manpage"}, &page, &errb); code != 0 {
			t.Fatalf("%s manpage: exit %d %s", k.Program, code, errb.String())
		}
		for _, c := range commandTable {
			has := strings.Contains(page.String(), "\n.SS "+c.name+"\n")
			if want := !c.imageOnly || k.Image; has != want {
				t.Errorf("%s's man page: section %s present %v, want %v", k.Program, c.name, has, want)
			}
			var help bytes.Buffer
			if want := !c.imageOnly || k.Image; want {
				if code := Main(k, []string{c.name, "--help"}, &help, &errb); code != 0 || !strings.HasPrefix(help.String(), "Usage: "+k.Program+" "+c.name) {
					t.Errorf("%s %s --help: exit %d %q", k.Program, c.name, code, help.String())
				}
			}
		}
	}
}

func TestMissingBridges(t *testing.T) {
	sys := t.TempDir()
	os.Mkdir(filepath.Join(sys, "br-ok"), 0o755)
	cfg := "lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\n" +
		"lxc.net.1.type = veth\nlxc.net.1.link = br-ok\n" +
		"lxc.net.2.type = macvlan\nlxc.net.2.link = eth9\n" +
		"# lxc.net.3.link = commented\n"
	w := missingBridges(cfg, "/etc/lxc/default.conf", sys)
	if len(w) != 1 || !strings.Contains(w[0], "lxc.net.0.link = lxcbr0 (copied from /etc/lxc/default.conf)") ||
		!strings.Contains(w[0], "systemctl start lxc-net") || !strings.Contains(w[0], "--default-config /dev/null") {
		t.Fatalf("%q", w)
	}
	if w := missingBridges("lxc.net.0.type = empty\n", "/d", sys); len(w) != 0 {
		t.Fatalf("no network: %q", w)
	}
}

// lxc-hook-aufs init on a kernel without AuFS: refused, nothing written,
// naming the ways out; with --fallback=overlay the lines carry it and init
// says so. Its --help has no --ephemeral (AuFS has none).
func TestInitAufsWithoutAufs(t *testing.T) {
	saved := hasAufs
	hasAufs = func() bool { return false }
	defer func() { hasAufs = saved }()
	aufs := Kind{Program: "lxc-hook-aufs"}
	tpl := t.TempDir()
	lxcpath := t.TempDir()
	var out, errb bytes.Buffer
	args := []string{"init", "a1", "--template", tpl, "-P", lxcpath, "--default-config", "/dev/null"}
	if code := Main(aufs, args, &out, &errb); code != 1 || !strings.Contains(errb.String(), "this kernel has no AuFS") || !strings.Contains(errb.String(), "--fallback=overlay") || !strings.Contains(errb.String(), "lxc-hook-overlay init") {
		t.Fatalf("init without AuFS: exit %d, %q", code, errb.String())
	}
	if _, err := os.Lstat(filepath.Join(lxcpath, "a1")); err == nil {
		t.Fatal("a refused init left the container's directory")
	}
	out.Reset()
	errb.Reset()
	if code := Main(aufs, append(args, "--fallback=overlay"), &out, &errb); code != 0 {
		t.Fatalf("init --fallback=overlay: exit %d %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "--fallback=overlay") || !strings.Contains(errb.String(), "overlayfs") {
		t.Errorf("init --fallback=overlay did not say what it wrote: %q", errb.String())
	}
	cfg, _ := os.ReadFile(filepath.Join(lxcpath, "a1", "config"))
	for _, line := range strings.Split(string(cfg), "\n") {
		if strings.HasPrefix(line, "lxc.hook.") && !strings.HasSuffix(line, " --fallback=overlay") {
			t.Errorf("hook line without the fallback: %s", line)
		}
	}
	var help bytes.Buffer
	Main(aufs, []string{"init", "--help"}, &help, &errb)
	if strings.Contains(help.String(), "-ephemeral") || !strings.Contains(help.String(), "-fallback") {
		t.Errorf("lxc-hook-aufs init --help:\n%s", help.String())
	}
	if code := Main(aufs, []string{"init", "a2", "--template", tpl, "-P", lxcpath, "--ephemeral"}, &out, &errb); code != 2 {
		t.Errorf("lxc-hook-aufs init --ephemeral: exit %d, want 2 (unknown flag)", code)
	}
}

// status NAME... prints an entry for every NAME, those it cannot read with
// their error (JSON and text alike), and exits non-zero naming them.
func TestStatusNamesEveryContainer(t *testing.T) {
	lxcpath := t.TempDir()
	// A hook binary only this user can replace (status checks it).
	bin := filepath.Join(lxcpath, "bin", "lxc-hook-overlay")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755)
	for name, cfg := range map[string]string{
		"good": "lxc.rootfs.path = dir:/nonexistent/r\nlxc.hook.pre-mount = " + bin + "\n",
		"bad":  "lxc.hook.pre-mount = /h/lxc-hook-loopimg --image $HOME/x\n",
	} {
		os.MkdirAll(filepath.Join(lxcpath, name), 0o755)
		os.WriteFile(filepath.Join(lxcpath, name, "config"), []byte(cfg), 0o644)
	}
	k := Kind{Program: "lxc-hook-loopimg", Image: true}
	var out, errb bytes.Buffer
	code := Main(k, []string{"status", "bad", "good", "missing", "--json", "-P", lxcpath}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, errb.String())
	}
	var v struct {
		Containers []Status `json:"containers"`
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if len(v.Containers) != 3 || v.Containers[0].Name != "bad" || v.Containers[1].Name != "good" || v.Containers[2].Name != "missing" {
		t.Fatalf("entries: %+v", v.Containers)
	}
	if e := v.Containers[0].Error; !strings.Contains(e, "$HOME") {
		t.Errorf("bad: error %q", e)
	}
	if e := v.Containers[1].Error; e != "" || v.Containers[1].Hook != "lxc-hook-overlay" {
		t.Errorf("good: %+v", v.Containers[1])
	}
	if e := v.Containers[2].Error; !strings.Contains(e, "no config") {
		t.Errorf("missing: error %q", e)
	}
	if s := errb.String(); !strings.Contains(s, "2 of 3 containers could not be read: bad, missing") || strings.Count(s, "\n") != 1 {
		t.Errorf("stderr: %q", s)
	}
	// Text: the same three, the good one in full.
	out.Reset()
	errb.Reset()
	if code := Main(k, []string{"status", "bad", "good", "-P", lxcpath}, &out, &errb); code != 1 || !strings.Contains(out.String(), "bad: ") || !strings.Contains(out.String(), "  error:") || !strings.Contains(out.String(), "good: ") || !strings.Contains(out.String(), "  templates: /nonexistent/r") {
		t.Errorf("text: exit %d\n%s", code, out.String())
	}
	// All readable: exit 0, nothing on stderr.
	errb.Reset()
	if code := Main(k, []string{"status", "good", "-P", lxcpath}, &out, &errb); code != 0 || errb.Len() != 0 {
		t.Errorf("a readable container: exit %d %q", code, errb.String())
	}
}

// init gives the container a log at WARN beside its config, unless the
// host's default config chose its own.
func TestInitLogLines(t *testing.T) {
	var b strings.Builder
	writeLogLines(&b, "lxc-hook-loopimg", "web1", "/var/lib/lxc/web1", "lxc.net.0.type = empty\n")
	if got := b.String(); !strings.Contains(got, "\nlxc.log.file = /var/lib/lxc/web1/web1.log\nlxc.log.level = WARN\n") || !strings.Contains(got, "lxc-hook-loopimg status web1") {
		t.Fatalf("got:\n%s", got)
	}
	b.Reset()
	writeLogLines(&b, "lxc-hook-loopimg", "web1", "/var/lib/lxc/web1", "lxc.log.level = INFO\n")
	if got := b.String(); strings.Contains(got, "lxc.log.level") || !strings.Contains(got, "lxc.log.file = ") {
		t.Fatalf("the default config's level was overridden:\n%s", got)
	}
	b.Reset()
	writeLogLines(&b, "lxc-hook-loopimg", "web1", "/var/lib/lxc/web1", "lxc.log.level = INFO\nlxc.log.file = /var/log/lxc/x.log\n")
	if got := b.String(); got != "" {
		t.Fatalf("got:\n%s", got)
	}
}
