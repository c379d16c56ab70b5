package hook

import (
	"strings"
	"testing"
)

func envOf(m map[string]string) Env {
	return func(k string) string { return m[k] }
}

func baseEnv(extra map[string]string) map[string]string {
	m := map[string]string{
		"LXC_NAME":         "web1",
		"LXC_CONFIG_FILE":  "/var/lib/lxc/web1/config",
		"LXC_ROOTFS_PATH":  "dir:/var/lib/lxc/web1/rootfs",
		"LXC_ROOTFS_MOUNT": "/usr/lib/x86_64-linux-gnu/lxc/rootfs",
		"LXC_LOG_LEVEL":    "INFO",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestParseVersion0PreMount(t *testing.T) {
	inv, err := Parse([]string{"web1", "lxc", "pre-mount"}, envOf(baseEnv(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Version != 0 || inv.Type != PreMount || inv.Name != "web1" {
		t.Fatalf("got %+v", inv)
	}
	if inv.RootfsPath != "/var/lib/lxc/web1/rootfs" {
		t.Fatalf("rootfs prefix not stripped: %q", inv.RootfsPath)
	}
	if inv.MountNS != "" {
		t.Fatalf("pre-mount has no namespace argument, got %q", inv.MountNS)
	}
}

func TestParseVersion0StopNamespaces(t *testing.T) {
	args := []string{"web1", "lxc", "stop", "net:/proc/4468/fd/37", "mnt:/proc/4468/fd/38", "pid:/proc/4468/fd/39"}
	inv, err := Parse(args, envOf(baseEnv(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Type != Stop || inv.MountNS != "/proc/4468/fd/38" {
		t.Fatalf("got %+v", inv)
	}
}

func TestParseVersion1(t *testing.T) {
	env := baseEnv(map[string]string{
		"LXC_HOOK_VERSION": "1", "LXC_HOOK_TYPE": "stop", "LXC_HOOK_SECTION": "lxc",
		"LXC_MNT_NS": "/proc/99/fd/12",
	})
	inv, err := Parse(nil, envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Version != 1 || inv.Type != Stop || inv.MountNS != "/proc/99/fd/12" {
		t.Fatalf("got %+v", inv)
	}
}

func TestParseVersion1PostStopIgnoresStaleNamespace(t *testing.T) {
	env := baseEnv(map[string]string{
		"LXC_HOOK_VERSION": "1", "LXC_HOOK_TYPE": "post-stop", "LXC_MNT_NS": "/proc/99/fd/12",
	})
	inv, err := Parse(nil, envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	if inv.MountNS != "" {
		t.Fatalf("post-stop must not use the stale LXC_MNT_NS, got %q", inv.MountNS)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"by hand", nil, map[string]string{}, "not run by LXC"},
		{"v0 too few", []string{"web1", "lxc"}, baseEnv(nil), "appends NAME lxc TYPE"},
		{"v0 stray word", []string{"oops", "web1", "lxc", "pre-mount"}, baseEnv(nil), `unexpected argument "oops" on the hook line before "web1 lxc pre-mount"`},
		{"v0 stray word no name", []string{"oops", "web1", "lxx", "pre-mount"}, baseEnv(nil), "section"},
		{"v0 bad type", []string{"web1", "lxc", "pre-mnt"}, baseEnv(nil), `"pre-mnt" is not an LXC hook type`},
		{"v0 extra after pre-mount", []string{"web1", "lxc", "pre-mount", "x"}, baseEnv(nil), `unexpected argument "x"`},
		{"v1 with args", []string{"web1"}, baseEnv(map[string]string{"LXC_HOOK_VERSION": "1", "LXC_HOOK_TYPE": "stop"}), "version 1 passes nothing"},
		{"v1 no type", nil, baseEnv(map[string]string{"LXC_HOOK_VERSION": "1"}), "LXC_HOOK_TYPE is empty"},
		{"bad version", nil, baseEnv(map[string]string{"LXC_HOOK_VERSION": "2"}), "only lxc.hook.version 0 and 1"},
		{"loop rootfs", []string{"web1", "lxc", "pre-mount"}, baseEnv(map[string]string{"LXC_ROOTFS_PATH": "loop:/x.img"}), `storage type "loop"`},
		{"no rootfs", []string{"web1", "lxc", "pre-mount"}, baseEnv(map[string]string{"LXC_ROOTFS_PATH": ""}), "LXC_ROOTFS_PATH is empty"},
		{"name mismatch", []string{"db", "lxc", "pre-mount"}, baseEnv(nil), "differs from LXC_NAME"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.args, envOf(c.env))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want error containing %q, got %v", c.want, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error must be one line: %q", err)
			}
		})
	}
}

func TestStripRootfsPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"dir:/var/lib/lxc/a/rootfs": "/var/lib/lxc/a/rootfs",
		"/var/lib/lxc/a/rootfs/":    "/var/lib/lxc/a/rootfs",
		"/srv/with:colon/rootfs":    "/srv/with:colon/rootfs",
	} {
		got, err := StripRootfsPrefix(in)
		if err != nil || got != want {
			t.Errorf("StripRootfsPrefix(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := StripRootfsPrefix("dir:relative"); err == nil {
		t.Error("relative rootfs accepted")
	}
	// Other storage types are refused, naming the type and the fix: a
	// dir: rootfs, or, for the overlay rootfs of lxc-copy -e, the hooks'
	// own ephemeral containers (a dir: rootfs is not what that user wants).
	for in, want := range map[string][]string{
		"loop:/var/lib/lxc/a/rootdev":                                    {`storage type "loop"`, "use dir:/path/to/an/empty/directory"},
		"overlay:/var/lib/lxc/a/rootfs:/var/lib/lxc/a_x/overlay/delta":   {`storage type "overlay"`, "lxc-copy -e", "--ephemeral"},
		"overlayfs:/var/lib/lxc/a/rootfs:/var/lib/lxc/a_x/overlay/delta": {`storage type "overlayfs"`, "lxc-copy -e", "--ephemeral"},
	} {
		_, err := StripRootfsPrefix(in)
		if err == nil {
			t.Errorf("StripRootfsPrefix(%q) accepted", in)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("StripRootfsPrefix(%q): %q lacks %q", in, err, w)
			}
		}
		if strings.Contains(in, "overlay") && strings.Contains(err.Error(), "use dir:") {
			t.Errorf("StripRootfsPrefix(%q) sends an lxc-copy -e user to a dir: rootfs: %q", in, err)
		}
	}
}

func TestConfigValues(t *testing.T) {
	v := ConfigValues(strings.NewReader(`
# lxc.hook.pre-mount = /commented
lxc.hook.pre-mount = /usr/share/lxc/hooks/mountecryptfsroot
lxc.hook.pre-mount=/usr/share/lxc/hooks/lxc-hook-loopimg --size 2G
lxc.log.file = /a
lxc.log.file = /b
lxc.rootfs.path = dir:/r
`), "lxc.hook.pre-mount", "lxc.log.file")
	if got := v["lxc.hook.pre-mount"]; len(got) != 2 || got[1] != "/usr/share/lxc/hooks/lxc-hook-loopimg --size 2G" {
		t.Fatalf("hooks: %q", got)
	}
	if Last(v["lxc.log.file"]) != "/b" || v["lxc.rootfs.path"] != nil || Last(nil) != "" {
		t.Fatalf("%v", v)
	}
}

// LXC appends the name unquoted: sh splits "my web 1" into three words.
func TestVersion0NameWithSpaces(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"LXC_NAME": "my web  1", "LXC_CONFIG_FILE": "/c", "LXC_ROOTFS_PATH": "dir:/r"}[k]
	}
	inv, err := Parse([]string{"my", "web", "1", "lxc", "stop", "mnt:/proc/9/fd/3"}, env)
	if err != nil || inv.Name != "my web  1" || inv.Type != Stop || inv.MountNS != "/proc/9/fd/3" {
		t.Fatalf("%+v %v", inv, err)
	}
	if _, err := Parse([]string{"junk", "my", "web", "1", "lxc", "stop"}, env); err == nil || !strings.Contains(err.Error(), `"junk"`) {
		t.Fatalf("a stray word before the name: %v", err)
	}
}

func TestRunByLXC(t *testing.T) {
	none := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{[]string{"stauts"}, nil, false},
		{[]string{"status", "web1"}, nil, false},
		{nil, nil, false},
		{[]string{"--lower", "/t", "web1", "lxc", "pre-mount"}, nil, true},
		{[]string{"web1", "lxc", "nonsense"}, nil, false},
		{[]string{"stauts"}, map[string]string{"LXC_NAME": "web1"}, true},
		{nil, map[string]string{"LXC_HOOK_TYPE": "pre-mount"}, true},
	} {
		env := none
		if tc.env != nil {
			env = func(k string) string { return tc.env[k] }
		}
		if got := RunByLXC(tc.args, env); got != tc.want {
			t.Errorf("RunByLXC(%q, %v) = %v, want %v", tc.args, tc.env, got, tc.want)
		}
	}
}
