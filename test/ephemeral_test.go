package test

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/lxc-hooks/lxc-hooks/pkg/lxclog"
)

// dirFiles lists a container directory's entries.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.Name() == lxclog.StartedName {
			continue // when the hooks last started it: no layer data
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// init --ephemeral: a write is gone after a restart and after a crash
// (init and the LXC monitor SIGKILLed, no stop hooks), nothing of the layer
// is left in the container's directory, no loop device stays attached,
// and the layer is capped (ENOSPC inside at --size).
func TestEphemeral(t *testing.T) {
	requireEnv(t)
	for _, hook := range []string{"lxc-hook-overlay", "lxc-hook-loopimg"} {
		t.Run(hook, func(t *testing.T) {
			c := initCtr(t, hook, "--ephemeral", "--size", "32M")
			cfg, _ := os.ReadFile(filepath.Join(c.dir, "config"))
			if !strings.Contains(string(cfg), " --ephemeral") {
				t.Fatalf("init --ephemeral wrote no --ephemeral:\n%s", cfg)
			}
			want := strings.Join(dirFiles(t, c.dir), " ") // config, rootfs
			// A start that died between making its image and mounting it
			// left the image under the hook's own name: removed at the
			// next start.
			leftover := filepath.Join(c.dir, ".layer.img.ephemeral."+filepath.Base(c.runDir()))
			if hook == "lxc-hook-loopimg" {
				os.WriteFile(leftover, []byte("left by a crash"), 0o600)
			}
			c.mustStart()
			if exists(leftover) {
				t.Fatalf("the leftover ephemeral image %s was not removed", leftover)
			}
			c.mustSh("echo gone > /root/w && sync")
			if got := c.mustSh("cat /etc/from-template"); got != "template file\n" {
				t.Fatalf("template not under the ephemeral layer: %q", got)
			}
			// The cap: 64M into a 32M layer.
			out, err := c.sh("dd if=/dev/zero of=/root/big bs=1M count=64 2>&1; sync")
			if err == nil && !strings.Contains(out, "No space left") {
				t.Fatalf("64M written into a 32M ephemeral layer: %s", out)
			}
			kb, _ := strconv.Atoi(strings.Fields(c.mustSh("df -k / | tail -1"))[1])
			if kb > 32*1024 || kb < 16*1024 {
				t.Fatalf("df / shows %d KiB for a 32M cap", kb)
			}
			c.mustSh("rm /root/big")
			c.stop(false)
			assertNoLoops(t, workRoot, "after the ephemeral container stopped")
			if got := strings.Join(without(dirFiles(t, c.dir), c.name+".log"), " "); got != want {
				t.Fatalf("after stop the container directory holds %q, before the start %q", got, want)
			}
			c.mustStart()
			if out, _ := c.sh("cat /root/w 2>/dev/null"); out != "" {
				t.Fatalf("the ephemeral layer kept a write over a restart: %q", out)
			}
			c.mustSh("echo gone > /root/w && sync")

			// A crash: init and the monitor SIGKILLed, no stop hooks.
			mon, init := monitorPID(t, c), c.pid()
			syscall.Kill(mon, syscall.SIGKILL)
			syscall.Kill(init, syscall.SIGKILL)
			waitGone(t, mon, "the LXC monitor after kill -9")
			c.mustStart()
			if out, _ := c.sh("cat /root/w 2>/dev/null"); out != "" {
				t.Fatalf("the ephemeral layer kept a write over a crash: %q", out)
			}
			c.stop(false)
			assertNoLoops(t, workRoot, "after the crash and a stop")
			if got := strings.Join(without(dirFiles(t, c.dir), c.name+".log"), " "); got != want {
				t.Fatalf("after a crash and a stop the container directory holds %q, before %q", got, want)
			}
		})
	}
}

func without(l []string, drop string) []string {
	var out []string
	for _, s := range l {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}
