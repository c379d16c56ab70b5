package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/lxc-hooks/lxc-hooks/pkg/freeze"
	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
)

func TestRewrite(t *testing.T) {
	in := `# Container web1 in /var/lib/lxc/web1
lxc.uts.name = web1
lxc.rootfs.path = dir:/var/lib/lxc/web1/rootfs
lxc.log.file = /var/lib/lxc/web1/web1.log
lxc.hook.pre-mount = /usr/share/lxc/hooks/lxc-hook-loopimg --config /var/lib/lxc/web1/config --lower /var/lib/lxc/web10/t.sqfs --image /srv/l/web1.img
lxc.mount.entry = /var/lib/lxc/web1x mnt none bind 0 0
`
	r := rewrite{SrcDir: "/var/lib/lxc/web1", DstDir: "/var/lib/lxc/web2", Name: "web2", SrcName: "web1", DstName: "web2", OldLayer: "/srv/l/web1.img", NewLayer: "/var/lib/lxc/web2/layer.img"}
	want := `# Container web1 in /var/lib/lxc/web1
lxc.uts.name = web2
lxc.rootfs.path = dir:/var/lib/lxc/web2/rootfs
lxc.log.file = /var/lib/lxc/web2/web2.log
lxc.hook.pre-mount = /usr/share/lxc/hooks/lxc-hook-loopimg --config /var/lib/lxc/web2/config --lower /var/lib/lxc/web10/t.sqfs --image /var/lib/lxc/web2/layer.img
lxc.mount.entry = /var/lib/lxc/web1x mnt none bind 0 0
`
	if got := r.apply(in); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// A snapshot: the new directory is below the old one, and LXC has
	// rewritten the rootfs already.
	snap := rewrite{SrcDir: "/l/web1", DstDir: "/l/web1/snaps/snap0", KeepRootfs: true}
	in = "lxc.rootfs.path = dir:/l/web1/snaps/snap0/rootfs\nlxc.hook.clone = /l/web1/snaps/snap0/h --config /l/web1/config\n"
	want = "lxc.rootfs.path = dir:/l/web1/snaps/snap0/rootfs\nlxc.hook.clone = /l/web1/snaps/snap0/h --config /l/web1/snaps/snap0/config\n"
	if got := snap.apply(in); got != want {
		t.Errorf("snapshot: got\n%s\nwant\n%s", got, want)
	}
}

func TestIsCloneHook(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if !isCloneHook([]string{"--config", "/c", "web2", "lxc", "clone", "extra"}, env(map[string]string{"LXC_NAME": "web2"})) {
		t.Fatal("version 0 clone not recognised")
	}
	if !isCloneHook(nil, env(map[string]string{"LXC_NAME": "web2", "LXC_HOOK_VERSION": "1", "LXC_HOOK_TYPE": "clone"})) {
		t.Fatal("version 1 clone not recognised")
	}
	if isCloneHook([]string{"web2", "lxc", "pre-mount"}, env(map[string]string{"LXC_NAME": "web2"})) {
		t.Fatal("pre-mount taken for clone")
	}
}

func TestReplacePath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/a/web1", "/a/web2"},
		{"/a/web1/x /a/web1", "/a/web2/x /a/web2"},
		{"/a/web10/x", "/a/web10/x"},
		{"/b/a/web1/x", "/b/a/web1/x"},
		{"--image='/a/web1/l.img'", "--image='/a/web2/l.img'"},
	} {
		if got := replacePath(c.in, "/a/web1", "/a/web2"); got != c.want {
			t.Errorf("replacePath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// A copy into a directory with a blank and a quote keeps each hook path
// one word; a quoted source path is found inside its quotes.
func TestRewriteQuotesHookLines(t *testing.T) {
	r := rewrite{SrcDir: "/l/my web", DstDir: "/l/it's new"}
	in := "lxc.hook.pre-mount = /h/lxc-hook-loopimg --config '/l/my web/config' --image='/l/my web/layer.img' --lower /t/a.sqfs\n"
	out := r.apply(in)
	_, v, _ := strings.Cut(strings.TrimSpace(out), "=")
	words, err := hook.SplitWords(strings.TrimSpace(v))
	if err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	want := []string{"/h/lxc-hook-loopimg", "--config", "/l/it's new/config", "--image=/l/it's new/layer.img", "--lower", "/t/a.sqfs"}
	if strings.Join(words, "|") != strings.Join(want, "|") {
		t.Fatalf("%q read back as %q", out, words)
	}
}

// Which states a copy takes: stopped as before, running and lxc-frozen
// live (with LXC's init PID), starting and stopping refused by name.
func TestLiveOf(t *testing.T) {
	c := &container{Name: "web1"}
	if l, err := liveOf(c, "STOPPED", 0); l != nil || err != nil {
		t.Fatalf("STOPPED: %+v %v", l, err)
	}
	for _, st := range []string{"RUNNING", "FROZEN"} {
		if l, err := liveOf(c, st, 42); err != nil || l == nil || l.PID != 42 || l.State != st || l.NoFreeze || l.MaxFreeze <= 0 {
			t.Fatalf("%s: %+v %v", st, l, err)
		}
		if _, err := liveOf(c, st, 0); err == nil {
			t.Fatalf("%s without an init PID accepted", st)
		}
	}
	for _, st := range []string{"STARTING", "STOPPING", "ABORTING", "UNKNOWN"} {
		if _, err := liveOf(c, st, 42); err == nil || !strings.Contains(err.Error(), st) || !strings.Contains(err.Error(), "nothing was copied") {
			t.Fatalf("%s: %v", st, err)
		}
	}
}

// What a copy of a running container says it was: frozen (how long, by
// what), frozen before and left so, or crash-consistent only.
func TestCopyReportOfLiveCopies(t *testing.T) {
	live := copyJob{Live: &liveSource{State: "RUNNING", PID: 1}}
	rep := &copyReport{}
	noteFreeze(live, &freeze.Freeze{}, freeze.Result{Kind: freeze.Filesystem, Frozen: 1234567 * time.Microsecond}, rep)
	noteConsistency(live, rep)
	r := rep.result()
	if r.Consistency != "frozen" || r.Freeze != "filesystem" || r.FrozenSeconds != 1.234567 || !strings.Contains(rep.text(), "frozen (writes waited, reads went on) for 1.235s") {
		t.Fatalf("frozen: %+v %q", r, rep.text())
	}
	if !strings.Contains(rep.thawNote(), "thawed after 1.235s") {
		t.Fatalf("thaw note: %q", rep.thawNote())
	}
	rep = &copyReport{}
	noteFreeze(live, &freeze.Freeze{}, freeze.Result{Kind: freeze.CgroupV2, Already: true}, rep)
	noteConsistency(live, rep)
	if r := rep.result(); !r.FreezeWasThere || r.Freeze != "cgroup-v2" || !strings.Contains(rep.text(), "left frozen") || rep.thawNote() != "" {
		t.Fatalf("frozen before: %+v %q", r, rep.text())
	}
	rep = &copyReport{}
	noteFreeze(live, nil, freeze.Result{}, rep)
	noteConsistency(live, rep)
	if r := rep.result(); r.Consistency != "crash-consistent" || r.Freeze != "" || !strings.Contains(rep.text(), "crash-consistent at best") {
		t.Fatalf("--no-freeze: %+v %q", r, rep.text())
	}
	stopped := &copyReport{consistency: "stopped"}
	noteFreeze(copyJob{}, nil, freeze.Result{}, stopped)
	noteConsistency(copyJob{}, stopped)
	if r := stopped.result(); r.Consistency != "stopped" || r.Freeze != "" || stopped.text() != "" {
		t.Fatalf("stopped: %+v %q", r, stopped.text())
	}
}
