package identity

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestValidHostname(t *testing.T) {
	for name, want := range map[string]bool{
		"web1": true, "web-1.example.org": true, "my_ct": true, "a": true,
		"": false, "with blank": false, "-x": false, "x-": false, "a..b": false, ".a": false,
		strings.Repeat("a", 64): true, strings.Repeat("a", 65): false, "é": false,
	} {
		if got := ValidHostname(name); got != want {
			t.Errorf("ValidHostname(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestHostsNewLayerReplacesTheBuildersName(t *testing.T) {
	in := "127.0.0.1\tlocalhost\n127.0.1.1\tbuilder.example.org builder # the builder\n\n::1 localhost ip6-localhost\n"
	got, changed := Hosts(in, "web1", "")
	want := "127.0.0.1\tlocalhost\n127.0.1.1\tweb1 # the builder\n\n::1 localhost ip6-localhost\n"
	if !changed || got != want {
		t.Fatalf("got %q (%v)\nwant %q", got, changed, want)
	}
	if again, changed := Hosts(got, "web1", ""); changed || again != got {
		t.Fatalf("second run changed it: %q", again)
	}
}

func TestHostsNewLayerAddsTheLine(t *testing.T) {
	got, changed := Hosts("127.0.0.1 localhost\n::1 localhost\n", "web1", "")
	if want := "127.0.0.1 localhost\n127.0.1.1\tweb1\n::1 localhost\n"; !changed || got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	got, _ = Hosts("# nothing\n", "web1", "")
	if want := "# nothing\n127.0.1.1\tweb1\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	got, _ = Hosts("", "web1", "")
	if want := "127.0.1.1\tweb1\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestHostsCopyReplacesOnlyTheOldName(t *testing.T) {
	in := "127.0.0.1 localhost web1\n127.0.1.1   web1.example.org web1 web10 mail\n"
	got, changed := Hosts(in, "web2", "web1")
	// The 127.0.0.1 line is the user's; web10 is another name.
	want := "127.0.0.1 localhost web1\n127.0.1.1\tweb2.example.org web2 web10 mail\n"
	if !changed || got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// A copy whose hosts has no 127.0.1.1 line gets none.
	if got, changed := Hosts("127.0.0.1 localhost\n", "web2", "web1"); changed || got != "127.0.0.1 localhost\n" {
		t.Fatalf("got %q (%v)", got, changed)
	}
}

func TestDecide(t *testing.T) {
	exists := func(p string) bool { return p == "/lxc/src/config" }
	empty := func(e bool) func() (bool, error) { return func() (bool, error) { return e, nil } }
	for _, tc := range []struct {
		name   string
		rec    *Record
		config string
		host   string
		empty  bool
		want   string // kind, "" for nothing, "adopt"
		mid    bool
	}{
		{"new layer", nil, "/lxc/a/config", "a", true, "new", true},
		{"layer from before records", nil, "/lxc/a/config", "a", false, "adopt", false},
		{"its own", &Record{Config: "/lxc/a/config", Hostname: "a"}, "/lxc/a/config", "a", false, "", false},
		{"a copy of a container that still exists", &Record{Config: "/lxc/src/config", Hostname: "src"}, "/lxc/dst/config", "dst", false, "copy", true},
		{"renamed: the old config is gone", &Record{Config: "/lxc/old/config", Hostname: "old"}, "/lxc/new/config", "new", false, "move", false},
		{"lxc.uts.name changed", &Record{Config: "/lxc/a/config", Hostname: "a"}, "/lxc/a/config", "b", false, "rename", false},
		{"a start killed halfway", &Record{Config: "/lxc/dst/config", Hostname: "dst", Pending: "copy", From: "src"}, "/lxc/dst/config", "dst", false, "copy", true},
	} {
		ch, adopt, err := decide(tc.rec, tc.config, tc.host, empty(tc.empty), exists)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		switch {
		case adopt:
			got = "adopt"
		case ch != nil:
			got = ch.kind
		}
		if got != tc.want || (ch != nil && ch.machineID != tc.mid) {
			t.Errorf("%s: got %q (%+v), want %q machine-id %v", tc.name, got, ch, tc.want, tc.mid)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := Record{Config: "/var/lib/lxc/a b/config", Hostname: "a", Pending: "copy", From: "src"}
	if got := ParseRecord(r.String()); *got != r {
		t.Fatalf("got %+v, want %+v", got, r)
	}
}

// fakeLayer is a container root (a plain directory standing for the
// union) and a layer directory with an upper.
func fakeLayer(t *testing.T, files map[string]string) (Layer, string) {
	t.Helper()
	d := t.TempDir()
	os.Chmod(d, 0o755)
	l := Layer{Root: filepath.Join(d, "root"), Dir: filepath.Join(d, "layer"), Upper: filepath.Join(d, "layer", "upper"), Name: "web2"}
	for _, p := range []string{l.Root + "/etc", l.Root + "/var/lib/dbus", l.Upper} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(l.Dir, 0o700)
	for rel, content := range files {
		p := filepath.Join(l.Root, rel)
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	l.Config = filepath.Join(d, "web2", "config")
	os.MkdirAll(filepath.Dir(l.Config), 0o755)
	os.WriteFile(l.Config, []byte("lxc.uts.name = web2\n"), 0o644)
	return l, d
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func quietLog() (*logrus.Entry, *bytes.Buffer) {
	var b bytes.Buffer
	l := logrus.New()
	l.Out = &b
	return logrus.NewEntry(l), &b
}

func TestApplyNewLayer(t *testing.T) {
	l, _ := fakeLayer(t, map[string]string{
		"etc/hostname":            "builder\n",
		"etc/hosts":               "127.0.0.1 localhost\n127.0.1.1 builder\n",
		"etc/machine-id":          "0123456789abcdef0123456789abcdef\n",
		"var/lib/dbus/machine-id": "->/etc/machine-id",
	})
	log, _ := quietLog()
	if err := Apply(l, log); err != nil {
		t.Fatal(err)
	}
	if got := read(t, l.Root+"/etc/hostname"); got != "web2\n" {
		t.Fatalf("hostname %q", got)
	}
	if got := read(t, l.Root+"/etc/hosts"); got != "127.0.0.1 localhost\n127.0.1.1\tweb2\n" {
		t.Fatalf("hosts %q", got)
	}
	if got := read(t, l.Root+"/etc/machine-id"); got != "" {
		t.Fatalf("machine-id %q", got)
	}
	if fi, _ := os.Lstat(l.Root + "/var/lib/dbus/machine-id"); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the dbus symlink was replaced")
	}
	rec, _ := ReadRecord(filepath.Join(l.Dir, RecordName))
	if rec == nil || rec.Config != l.Config || rec.Hostname != "web2" || rec.Pending != "" {
		t.Fatalf("record %+v", rec)
	}

	// The container chooses its own hostname and gets its machine-id:
	// the next start leaves both.
	os.WriteFile(l.Root+"/etc/hostname", []byte("mine\n"), 0o644)
	os.WriteFile(l.Root+"/etc/machine-id", []byte("fedcba9876543210fedcba9876543210\n"), 0o444)
	os.WriteFile(l.Upper+"/x", nil, 0o644)
	if err := Apply(l, log); err != nil {
		t.Fatal(err)
	}
	if got := read(t, l.Root+"/etc/hostname"); got != "mine\n" {
		t.Fatalf("the container's own hostname was replaced: %q", got)
	}
	if got := read(t, l.Root+"/etc/machine-id"); got == "" {
		t.Fatal("the container's machine-id was emptied again")
	}
}

func TestApplyCopyAndMove(t *testing.T) {
	l, d := fakeLayer(t, map[string]string{
		"etc/hostname":            "web1\n",
		"etc/hosts":               "127.0.1.1 web1.example.org web1\n",
		"etc/machine-id":          "0123456789abcdef0123456789abcdef\n",
		"var/lib/dbus/machine-id": "0123456789abcdef0123456789abcdef\n",
	})
	os.WriteFile(l.Upper+"/x", nil, 0o644)
	src := filepath.Join(d, "web1", "config")
	os.MkdirAll(filepath.Dir(src), 0o755)
	os.WriteFile(src, nil, 0o644)
	if err := writeRecord(filepath.Join(l.Dir, RecordName), Record{Config: src, Hostname: "web1"}); err != nil {
		t.Fatal(err)
	}
	log, _ := quietLog()
	if err := Apply(l, log); err != nil {
		t.Fatal(err)
	}
	if got := read(t, l.Root+"/etc/hostname") + read(t, l.Root+"/etc/hosts"); got != "web2\n127.0.1.1\tweb2.example.org web2\n" {
		t.Fatalf("copy: %q", got)
	}
	for _, f := range MachineIDFiles {
		if got := read(t, filepath.Join(l.Root, f)); got != "" {
			t.Fatalf("copy: /%s %q", f, got)
		}
	}

	// Moved on (web2's config gone, a web3 starts the layer): new
	// hostname, the machine-id kept.
	os.WriteFile(l.Root+"/etc/machine-id", []byte("fedcba9876543210fedcba9876543210\n"), 0o444)
	os.RemoveAll(filepath.Dir(l.Config))
	l.Config, l.Name = filepath.Join(d, "web3", "config"), "web3"
	os.MkdirAll(filepath.Dir(l.Config), 0o755)
	os.WriteFile(l.Config, nil, 0o644)
	if err := Apply(l, log); err != nil {
		t.Fatal(err)
	}
	if got := read(t, l.Root+"/etc/hostname"); got != "web3\n" {
		t.Fatalf("move: hostname %q", got)
	}
	if got := read(t, l.Root+"/etc/machine-id"); got == "" {
		t.Fatal("move: the machine-id was emptied")
	}
}

// A symlink the container planted is never followed: the file it points
// to, outside the root, stays as it was.
func TestApplyNeverFollowsSymlinks(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(outside, []byte("host file\n"), 0o644)
	l, _ := fakeLayer(t, map[string]string{
		"etc/hostname":   "->" + outside,
		"etc/hosts":      "->" + outside,
		"etc/machine-id": "->" + outside,
	})
	// /var/lib pointing out of the root: a symlinked directory on the way.
	os.RemoveAll(l.Root + "/var/lib")
	os.Symlink(filepath.Dir(outside), l.Root+"/var/lib")
	os.MkdirAll(filepath.Dir(outside)+"/dbus", 0o755)
	os.WriteFile(filepath.Dir(outside)+"/dbus/machine-id", []byte("host id\n"), 0o644)
	log, out := quietLog()
	if err := Apply(l, log); err != nil {
		t.Fatal(err)
	}
	if got := read(t, outside); got != "host file\n" {
		t.Fatalf("a symlink was followed: %q", got)
	}
	if got := read(t, filepath.Dir(outside)+"/dbus/machine-id"); got != "host id\n" {
		t.Fatalf("a symlinked directory was followed: %q", got)
	}
	if !strings.Contains(out.String(), "/etc/hostname in the container was left as it is") || !strings.Contains(out.String(), "symlink") {
		t.Fatalf("no warning naming the symlink:\n%s", out)
	}
}

func TestApplyInvalidHostname(t *testing.T) {
	l, _ := fakeLayer(t, map[string]string{"etc/hostname": "builder\n"})
	os.WriteFile(l.Config, []byte("lxc.uts.name = my web\n"), 0o644)
	log, out := quietLog()
	if err := Apply(l, log); err != nil {
		t.Fatal(err)
	}
	if got := read(t, l.Root+"/etc/hostname"); got != "builder\n" {
		t.Fatalf("hostname %q", got)
	}
	if !strings.Contains(out.String(), `my web`) || !strings.Contains(out.String(), "not a valid hostname") {
		t.Fatalf("no warning:\n%s", out)
	}
}
