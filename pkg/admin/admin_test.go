package admin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	out := statusJSON([]Status{{Name: "we\"b\n1", State: "RUNNING", Hook: "lxc-hook-loopimg", Templates: []string{"/t\\x"},
		LayerKind: "image", LayerPath: "/i", CapBytes: 1 << 30, Loops: []LoopStatus{{Device: "/dev/loop1", Role: "template", Backing: "/t", Shared: true}}}})
	var v struct {
		Containers []map[string]interface{} `json:"containers"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	c := v.Containers[0]
	for _, k := range []string{"name", "state", "hook", "config", "templates", "layer", "cap_bytes", "used_bytes", "allocated_bytes", "loop_devices", "holders"} {
		if _, ok := c[k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}
	if c["name"] != "we\"b\n1" || c["cap_bytes"].(float64) != 1<<30 || c["templates"].([]interface{})[0] != "/t\\x" {
		t.Fatalf("%v", c)
	}
}

func TestUpdateSizeFlag(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte("lxc.uts.name = a\nlxc.hook.pre-mount = /h --lower /t --size 2G\nlxc.hook.stop = /h --size=2G --lower /t\n# --size 2G in a comment stays\n"), 0o640)
	if err := updateSizeFlag(&container{Config: cfg}, "4G"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(cfg)
	want := "lxc.uts.name = a\nlxc.hook.pre-mount = /h --lower /t --size 4G\nlxc.hook.stop = /h --size=4G --lower /t\n# --size 2G in a comment stays\n"
	if string(b) != want {
		t.Fatalf("got\n%s", b)
	}
}

func TestIsCommand(t *testing.T) {
	none := func(string) string { return "" }
	lxc := func(k string) string { return map[string]string{"LXC_NAME": "web1"}[k] }
	if !IsCommand([]string{"status"}, none) || IsCommand([]string{"status"}, lxc) || IsCommand([]string{"--help"}, none) || IsCommand(nil, none) {
		t.Fatal("IsCommand")
	}
}
