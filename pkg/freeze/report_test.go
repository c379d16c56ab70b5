package freeze

import (
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
)

func TestThawedLine(t *testing.T) {
	for _, why := range []string{whyAsked, whyLimit, whyLost, whyAlready} {
		d, w, err := parseThawed(thawedLine(1234567*time.Microsecond, why))
		if err != nil || d != 1234567*time.Microsecond || w != why {
			t.Fatalf("%s: %v %v %v", why, d, w, err)
		}
	}
	for _, bad := range []string{"", "thawed", "thawed 12", "thawed x asked", "thawed -1 asked", "thawed 12 maybe", "frozen 12 asked"} {
		if _, _, err := parseThawed(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestWatchdogArgs(t *testing.T) {
	o := Options{Max: 90 * time.Second, Settle: 3 * time.Second, Name: "web 1"}
	k, got, err := parseWatchdogArgs(watchdogArgs(CgroupV2, o))
	if err != nil || k != CgroupV2 || got != o {
		t.Fatalf("%v %+v %v", k, got, err)
	}
	if _, o, _ := parseWatchdogArgs(watchdogArgs(Filesystem, Options{}.withDefaults())); o.Name != "-" || o.Max != DefaultMax {
		t.Fatalf("defaults: %+v", o)
	}
	for _, bad := range [][]string{nil, {"fs", "1s", "1s"}, {"disk", "1s", "1s", "-"}, {"fs", "0s", "1s", "-"}, {"fs", "1s", "soon", "-"}} {
		if _, _, err := parseWatchdogArgs(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
	if !strings.Contains(errorLine(errorString("a\nb")), "error a b") {
		t.Fatal("an error line spans lines")
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestEventsFrozen(t *testing.T) {
	if !eventsFrozen("populated 1\nfrozen 1\n") || eventsFrozen("populated 1\nfrozen 0\n") || eventsFrozen("") {
		t.Fatal("cgroup.events misread")
	}
}

// The container's cgroup is the root of its init's cgroup namespace: on a
// hybrid host the v1 freezer hierarchy (as lxc-freeze uses it), with init
// in a sub-cgroup too; on a v2-only host cgroup v2; never the host's root.
func TestPickCgroup(t *testing.T) {
	mounts := []*mountinfo.Info{
		{Mountpoint: "/sys/fs/cgroup/memory", FSType: "cgroup", Root: "/", VFSOptions: "rw,memory"},
		{Mountpoint: "/sys/fs/cgroup/freezer", FSType: "cgroup", Root: "/", VFSOptions: "rw,freezer"},
		{Mountpoint: "/sys/fs/cgroup/unified", FSType: "cgroup2", Root: "/", VFSOptions: "rw"},
	}
	hybridHost := parseProcCgroup("6:freezer:/lxc.payload.web\n4:memory:/lxc.payload.web\n0::/lxc.payload.web/init.scope\n")
	hybridIn := parseProcCgroup("6:freezer:/\n4:memory:/\n0::/init.scope\n")
	k, mp, rel, err := pickCgroup(hybridHost, hybridIn, mounts)
	if err != nil || k != CgroupV1 || mp != "/sys/fs/cgroup/freezer" || rel != "lxc.payload.web" {
		t.Fatalf("hybrid: %v %s %s %v", k, mp, rel, err)
	}
	v2only := []*mountinfo.Info{{Mountpoint: "/sys/fs/cgroup", FSType: "cgroup2", Root: "/", VFSOptions: "rw"}}
	k, mp, rel, err = pickCgroup(parseProcCgroup("0::/lxc.payload.web/init.scope\n"), parseProcCgroup("0::/init.scope\n"), v2only)
	if err != nil || k != CgroupV2 || mp != "/sys/fs/cgroup" || rel != "lxc.payload.web" {
		t.Fatalf("v2, systemd's init.scope: %v %s %s %v", k, mp, rel, err)
	}
	// No cgroup namespace: init's own cgroup.
	k, _, rel, err = pickCgroup(parseProcCgroup("0::/lxc.payload.web\n"), parseProcCgroup("0::/lxc.payload.web\n"), v2only)
	if err != nil || k != CgroupV2 || rel != "lxc.payload.web" {
		t.Fatalf("no cgroupns: %v %s %v", k, rel, err)
	}
	if _, _, _, err := pickCgroup(parseProcCgroup("0::/\n"), parseProcCgroup("0::/\n"), v2only); err == nil {
		t.Fatal("the host's root cgroup picked")
	}
	if _, _, _, err := pickCgroup(hybridHost, hybridIn, nil); err == nil {
		t.Fatal("picked a hierarchy that is not mounted")
	}
	// A freezer mounted from a sub-cgroup (a container's view) is not used.
	sub := []*mountinfo.Info{{Mountpoint: "/sys/fs/cgroup/freezer", FSType: "cgroup", Root: "/lxc.payload.x", VFSOptions: "rw,freezer"}}
	if _, _, _, err := pickCgroup(hybridHost, hybridIn, sub); err == nil {
		t.Fatal("picked a hierarchy mounted from a sub-cgroup")
	}
}
