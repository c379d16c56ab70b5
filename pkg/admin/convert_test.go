package admin

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
)

func TestConvertedConfig(t *testing.T) {
	old := "lxc.include = /usr/share/lxc/config/debian.common.conf\nlxc.rootfs.path = dir:/var/lib/lxc/web1/rootfs\nlxc.rootfs.options = idmap=container\nlxc.uts.name = web1\nlxc.net.0.type = veth"
	p := &initPlan{k: Kind{Program: "lxc-hook-loopimg", Image: true}, name: "web1", dir: "/var/lib/lxc/web1", tpl: "/srv/web1.squashfs", self: "/usr/share/lxc/hooks/lxc-hook-loopimg", size: "2G"}
	got := p.convertedConfig(old)
	for _, want := range []string{
		"lxc.include = /usr/share/lxc/config/debian.common.conf\nlxc.rootfs.path = dir:/var/lib/lxc/web1/rootfs\n# lxc.rootfs.options = idmap=container  (convert: the hooks idmap the layers themselves)\nlxc.uts.name = web1\nlxc.net.0.type = veth\n",
		"lxc.log.file = /var/lib/lxc/web1/web1.log\n",
		"lxc.hook.pre-mount = /usr/share/lxc/hooks/lxc-hook-loopimg --config /var/lib/lxc/web1/config --lower /srv/web1.squashfs --size 2G\n",
		"lxc.hook.stop = ", "lxc.hook.clone = ", "/var/lib/lxc/web1/rootfs.pre-convert",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "lxc.idmap") || strings.Contains(got, "pre-start") {
		t.Errorf("a privileged container got unprivileged lines:\n%s", got)
	}
	// Unprivileged: its own lxc.idmap stays (not written twice), the hook
	// goes on pre-start; a log file it names stays its own.
	p.idm, _ = idmap.ParseLXC([]string{"u 0 100000 65536", "g 0 100000 65536"})
	got = p.convertedConfig("lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\nlxc.log.file = /var/log/web1.log\n")
	if strings.Count(got, "lxc.idmap") != 2 || !strings.Contains(got, "lxc.hook.pre-start = ") || strings.Contains(got, "pre-mount") || strings.Count(got, "lxc.log.file") != 1 {
		t.Errorf("unprivileged:\n%s", got)
	}
}

// lxc-template completes only a creation lxc-create has under way, of a
// directory rootfs in the container's directory, never in a user
// namespace; each refusal names what is wrong and changes nothing.
func TestLXCTemplateRefusals(t *testing.T) {
	k := Kind{Program: "lxc-hook-loopimg", Image: true}
	lxcpath := t.TempDir()
	dir := filepath.Join(lxcpath, "web1")
	os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755)
	cfg := "lxc.net.0.type = empty\nlxc.rootfs.path = dir:" + filepath.Join(dir, "rootfs") + "\n"
	os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o640)
	base := []string{"lxc-template", "--path=" + dir, "--name=web1", "--rootfs=" + filepath.Join(dir, "rootfs"), "--template", "/srv/t.squashfs"}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(k, args, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run(base...); code == 0 || !strings.Contains(out, "no container lxc-create is making") {
		t.Errorf("without LXC's partial file: %d %s", code, out)
	}
	os.WriteFile(filepath.Join(dir, "partial"), nil, 0)
	if code, out := run(append(base, "--mapped-uid", "65536", "--mapped-gid", "65536")...); code == 0 || !strings.Contains(out, "user namespace") {
		t.Errorf("in a user namespace: %d %s", code, out)
	}
	if code, out := run("lxc-template", "--template", "/srv/t.squashfs"); code != 2 || !strings.Contains(out, "init") {
		t.Errorf("by hand: %d %s", code, out)
	}
	os.WriteFile(filepath.Join(dir, "config"), []byte("lxc.rootfs.path = btrfs:"+filepath.Join(dir, "rootfs")+"\n"), 0o640)
	if code, out := run(base...); code == 0 || !strings.Contains(out, "-B dir") {
		t.Errorf("a btrfs rootfs: %d %s", code, out)
	}
	os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o640)
	os.WriteFile(filepath.Join(dir, "rootfs", "x"), nil, 0o644)
	if code, out := run(base...); code == 0 || !strings.Contains(out, "not an empty directory") {
		t.Errorf("a rootfs with files: %d %s", code, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "config")); string(b) != cfg {
		t.Errorf("a refusal changed the config: %q", b)
	}
	var help bytes.Buffer
	if code := Main(k, []string{"lxc-template", "-h"}, &help, &help); code != 0 || !strings.Contains(help.String(), "lxc-create -n NAME -t hooks-loopimg") || !strings.Contains(help.String(), "-size SIZE") {
		t.Errorf("-h: %d %s", code, help.String())
	}
	if TemplateName("lxc-hook-aufs") != "lxc-hooks-aufs" || lxcTemplateFlag("lxc-hook-overlay") != "hooks-overlay" {
		t.Error("template names")
	}
}
