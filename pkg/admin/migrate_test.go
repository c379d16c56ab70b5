package admin

import (
	"strings"
	"testing"
)

const legacyPriv = `# Container web1
lxc.include = /usr/share/lxc/config/common.conf
lxc.uts.name = web1
lxc.rootfs.path = dir:/var/lib/lxc/web1/rootfs
lxc.hook.pre-mount = /usr/share/lxc/hooks/other-hook --x
lxc.hook.pre-mount = '/usr/share/lxc/hooks/lxc-hook-loopimg' '--config' '/var/lib/lxc/web1/config' '--size' '2G'
lxc.hook.stop = '/usr/share/lxc/hooks/lxc-hook-loopimg' '--config' '/var/lib/lxc/web1/config' '--size' '2G'
lxc.hook.post-stop = '/usr/share/lxc/hooks/lxc-hook-loopimg' '--config' '/var/lib/lxc/web1/config' '--size' '2G'
lxc.hook.post-stop = /usr/local/bin/notify-stopped
lxc.hook.clone = '/usr/share/lxc/hooks/lxc-hook-loopimg' '--config' '/var/lib/lxc/web1/config' '--size' '2G'
`

func TestMigratePrivileged(t *testing.T) {
	out, changes, err := migrateText(legacyPriv, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(changes, ";") != "lxc.hook.post-stop removed" {
		t.Fatalf("changes %q", changes)
	}
	want := strings.Replace(legacyPriv, "lxc.hook.post-stop = '/usr/share/lxc/hooks/lxc-hook-loopimg' '--config' '/var/lib/lxc/web1/config' '--size' '2G'\n", "", 1)
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	// Other programs' hooks stay, on every key.
	for _, keep := range []string{"other-hook --x", "notify-stopped"} {
		if !strings.Contains(out, keep) {
			t.Fatalf("lost %q", keep)
		}
	}
	again, changes, err := migrateText(out, false)
	if err != nil || again != out || len(changes) != 0 {
		t.Fatalf("migrating twice changed %q (%v)", changes, err)
	}
}

func TestMigrateUnprivileged(t *testing.T) {
	line := "/usr/bin/lxc-hook-overlay --lower /srv/t.erofs"
	in := "lxc.idmap = u 0 100000 65536\n" +
		"lxc.hook.pre-start = " + line + "\n" +
		"lxc.hook.pre-mount = " + line + "\n" +
		"lxc.hook.stop = " + line + "\n" +
		"lxc.hook.post-stop = " + line + "\n"
	out, changes, err := migrateText(in, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "lxc.idmap = u 0 100000 65536\n" +
		"lxc.hook.pre-start = " + line + "\n" +
		"lxc.hook.stop = " + line + "\n" +
		"lxc.hook.clone = " + line + "\n"
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s\n(changes %q)", out, want, changes)
	}
	if got := strings.Join(changes, ";"); got != "lxc.hook.pre-mount removed;lxc.hook.post-stop removed;lxc.hook.clone added" {
		t.Fatalf("changes %q", got)
	}
}

// A config whose hook line is only on pre-mount (a hand-written one) gets
// the stop line; one with no hook line of ours is refused.
func TestMigrateAddsMissingKeys(t *testing.T) {
	in := "lxc.uts.name = a\nlxc.hook.pre-mount = /usr/bin/lxc-hook-overlay\nlxc.net.0.type = empty\n"
	out, _, err := migrateText(in, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "lxc.uts.name = a\nlxc.hook.pre-mount = /usr/bin/lxc-hook-overlay\nlxc.hook.stop = /usr/bin/lxc-hook-overlay\nlxc.hook.clone = /usr/bin/lxc-hook-overlay\nlxc.net.0.type = empty\n"
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	if _, _, err := migrateText("lxc.uts.name = a\nlxc.hook.pre-mount = /bin/true\n", false); err == nil {
		t.Fatal("migrated a config with no lxc-hook-* line")
	}
}
