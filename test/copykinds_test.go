package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// initUnpriv runs "HOOK init --unprivileged" with root's ranges
// 100000:65536 (bound over /etc/subuid and /etc/subgid for the command).
func initUnpriv(t *testing.T, hook, tpl string, extra ...string) *ctr {
	t.Helper()
	// The container's root must reach its directory below the run's root.
	if err := os.Chmod(workRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	lxcpath := filepath.Join(workRoot, "lxc")
	os.MkdirAll(lxcpath, 0o755)
	defaults := filepath.Join(workRoot, "default.conf")
	os.WriteFile(defaults, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"), 0o644)
	name := uniqueName("uinit")
	args := append([]string{"init", name, "--template", tpl, "-P", lxcpath, "--default-config", defaults, "--unprivileged"}, extra...)
	sub := fmt.Sprintf("root:%d:65536\n", unprivBase)
	if out, err := runWithSubIDs(t, sub, sub, filepath.Join(binDir, hook), args...); err != nil {
		t.Fatalf("%s init --unprivileged: %v\n%s", hook, err, out)
	}
	c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name), logFile: filepath.Join(lxcpath, name, name+".log")}
	t.Cleanup(func() {
		if c.state() != "STOPPED" {
			exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
		}
		if t.Failed() {
			t.Logf("LXC log of %s:\n%s", c.name, lastLines(c.log(), 30))
		}
	})
	return c
}

func ownerAndMode(t *testing.T, p string) (uint32, uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid, st.Mode & 0o7777
}

// Every kind of copy starts and has the data: copy and lxc-copy, of
// privileged and unprivileged containers, overlay and loopimg. A copy's
// directory has its source's owner, group and mode (the unprivileged
// container's root must reach its rootfs through it); an unprivileged
// copy keeps the idmap, and its files belong to its root inside.
func TestCopiesOfEveryKindStart(t *testing.T) {
	requireEnv(t)
	for _, unpriv := range []bool{false, true} {
		for hook, extra := range copyHooks {
			kind := map[bool]string{false: "privileged", true: "unprivileged"}[unpriv]
			t.Run(kind+"/"+hook, func(t *testing.T) {
				var c *ctr
				if unpriv {
					c = initUnpriv(t, hook, tplSquash, extra...)
				} else {
					c = initCtr(t, hook, extra...)
				}
				c.mustStart()
				c.mustSh("echo data > /root/data && sync")
				c.stop(false)

				byCopy := other(c, c.name+"-copy")
				if out, err := admin(t, hook, "copy", c.name, byCopy.name, "-P", c.lxcpath); err != nil {
					t.Fatalf("copy: %v %s", err, out)
				}
				byLXC := other(c, c.name+"-lxccopy")
				if out, err := c.lxc("lxc-copy", "-N", byLXC.name); err != nil {
					t.Fatalf("lxc-copy: %v %s", err, out)
				}
				su, sg, sm := ownerAndMode(t, c.dir)
				for _, d := range []*ctr{byCopy, byLXC} {
					if u, g, m := ownerAndMode(t, d.dir); u != su || g != sg || m != sm {
						t.Fatalf("%s: directory %d:%d %o, the source's is %d:%d %o", d.name, u, g, m, su, sg, sm)
					}
					if err := d.start(); err != nil {
						t.Fatalf("the copy does not start: %v", err)
					}
					if got := d.mustSh("cat /root/data; stat -c %u:%g /root/data"); got != "data\n0:0\n" {
						t.Fatalf("%s: /root/data and its owner: %q", d.name, got)
					}
					uidMap := d.mustSh("cat /proc/self/uid_map")
					if unpriv != strings.Contains(uidMap, unprivRoot) {
						t.Fatalf("%s (%s): uid_map inside is %q", d.name, kind, uidMap)
					}
					d.stop(false)
				}
				assertNoLoops(t, workRoot, "after the copies stopped")
			})
		}
	}
}
