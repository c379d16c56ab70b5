package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var copyHooks = map[string][]string{"lxc-hook-overlay": nil, "lxc-hook-loopimg": {"--size", "64M"}}

// writeLayerContent writes what a copy must keep: data, a whiteout (a
// template file deleted), an opaque directory (a template directory
// deleted and made again), a hardlink, a sparse file, a setuid file.
func writeLayerContent(c *ctr) {
	c.mustSh("echo data > /root/data && rm /etc/from-template /bin/wc && rm -rf /etc && mkdir /etc && echo o > /etc/o" +
		" && echo h > /root/h1 && ln /root/h1 /root/h2 && dd if=/dev/zero of=/root/sparse bs=1 count=1 seek=20971520 2>/dev/null" +
		" && touch /root/suid && chmod 4755 /root/suid && sync")
}

// checkLayerContent checks it in a (copied) container.
func checkLayerContent(t *testing.T, c *ctr) {
	t.Helper()
	got := c.mustSh("cat /root/data /etc/o; ls /etc; test -e /bin/wc && echo wc-back; stat -c '%h %A' /root/h1 /root/suid; du -k /root/sparse | cut -f1")
	want := "data\no\no\n2 -rw-r--r--\n1 -rwsr-xr-x\n"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("copied layer: got\n%s\nwant (then the sparse file's KiB)\n%s", got, want)
	}
	if kb := strings.TrimSpace(strings.TrimPrefix(got, want)); len(kb) > 3 {
		t.Fatalf("sparse file of 20M takes %s KiB in the copy", kb)
	}
}

// other is a container under the same lxcpath made by a copy.
func other(c *ctr, name string) *ctr {
	d := &ctr{t: c.t, name: name, lxcpath: c.lxcpath, dir: filepath.Join(c.lxcpath, name)}
	// initCtr's lxc.log.file is SRC/SRC.log; a copy's is DST/DST.log.
	d.logFile = filepath.Join(d.dir, name+".log")
	c.t.Cleanup(func() {
		if d.state() != "STOPPED" {
			exec.Command("lxc-stop", "-k", "-n", d.name, "-P", d.lxcpath).Run()
		}
		if c.t.Failed() {
			b, _ := os.ReadFile(d.logFile)
			c.t.Logf("LXC log of %s:\n%s", d.name, lastLines(string(b), 30))
		}
	})
	return d
}

// checkIndependent: a write in one is not seen in the other.
func checkIndependent(t *testing.T, a, b *ctr) {
	t.Helper()
	fa, fb := "/root/from-"+a.name+"-for-"+b.name, "/root/from-"+b.name+"-for-"+a.name
	a.mustStart()
	a.mustSh("echo x > " + fa + " && sync")
	a.stop(false)
	b.mustStart()
	if out, _ := b.sh("cat " + fa + " 2>/dev/null"); out != "" {
		t.Fatalf("%s sees %s's write", b.name, a.name)
	}
	b.mustSh("echo x > " + fb + " && sync")
	b.stop(false)
	a.mustStart()
	if out, _ := a.sh("cat " + fb + " 2>/dev/null"); out != "" {
		t.Fatalf("%s sees %s's write", a.name, b.name)
	}
	a.stop(false)
}

// copy SRC DST: data, whiteouts, opaque directories, hardlinks, holes and
// setuid kept; the image sparse and fsck clean; the config names DST's own
// paths only; independent of the source; an existing DST is refused. (A
// running source: livecopy_test.go.)
func TestCopyCommand(t *testing.T) {
	requireEnv(t)
	for hook, extra := range copyHooks {
		t.Run(hook, func(t *testing.T) {
			c := initCtr(t, hook, extra...)
			c.mustStart()
			writeLayerContent(c)
			c.stop(false)
			out, err := admin(t, hook, "copy", c.name, c.name+"-copy", "-P", c.lxcpath)
			if err != nil {
				t.Fatalf("copy: %v %s", err, out)
			}
			t.Log(strings.TrimSpace(out))
			d := other(c, c.name+"-copy")
			cfg, _ := os.ReadFile(filepath.Join(d.dir, "config"))
			if strings.Contains(string(cfg), c.dir+"/") || !strings.Contains(string(cfg), "lxc.uts.name = "+d.name+"\n") || !strings.Contains(string(cfg), "--config "+filepath.Join(d.dir, "config")) {
				t.Fatalf("copied config still points into the source or lacks its name:\n%s", cfg)
			}
			if hook == "lxc-hook-loopimg" {
				src, dst := filepath.Join(c.dir, "layer.img"), filepath.Join(d.dir, "layer.img")
				fsckClean(t, dst, "the copy")
				sa, da := allocated(t, src), allocated(t, dst)
				t.Logf("image %d bytes; allocated: source %d, copy %d", apparentSize(t, dst), sa, da)
				if apparentSize(t, dst) != apparentSize(t, src) || da > sa+1<<20 || da > apparentSize(t, dst)/2 {
					t.Fatalf("copy not sparse: %d allocated (source %d)", da, sa)
				}
			}
			if out, err := admin(t, hook, "copy", c.name, d.name, "-P", c.lxcpath); err == nil || !strings.Contains(out, "already exists") {
				t.Fatalf("copy onto an existing container: %v %s", err, out)
			}
			d.mustStart()
			checkLayerContent(t, d)
			d.stop(false)
			checkIndependent(t, c, d)
			assertNoLoops(t, workRoot, "after the copies stopped")
		})
	}
}

// LXC's own tools: lxc-copy and lxc-copy -R run init's clone hook, which
// copies the layer; lxc-snapshot keeps the layer in the snapshot and a
// restore brings it back; a config copied without the hook (cp) is refused
// at start with a line naming the copy command; lxc-destroy removes the
// default layer with the directory.
func TestLXCToolsCopy(t *testing.T) {
	requireEnv(t)
	for hook, extra := range copyHooks {
		t.Run(hook, func(t *testing.T) {
			c := initCtr(t, hook, extra...)
			c.mustStart()
			writeLayerContent(c)
			// (lxc-copy --allowrunning of a running container:
			// TestLiveLXCCopy.)
			c.stop(false)

			if out, err := c.lxc("lxc-copy", "-N", c.name+"-lxccopy"); err != nil {
				t.Fatalf("lxc-copy: %v %s", err, out)
			}
			d := other(c, c.name+"-lxccopy")
			d.mustStart()
			checkLayerContent(t, d)
			d.stop(false)
			checkIndependent(t, c, d)

			// lxc-copy -s: LXC would make the rootfs overlay:SRC:DELTA; the
			// clone hook copies the layer and keeps a directory rootfs.
			s := other(c, c.name+"-snapclone")
			if out, err := c.lxc("lxc-copy", "-s", "-N", s.name); err != nil {
				t.Fatalf("lxc-copy -s: %v %s", err, out)
			}
			if scfg, _ := os.ReadFile(filepath.Join(s.dir, "config")); !strings.Contains(string(scfg), "lxc.rootfs.path = dir:"+filepath.Join(s.dir, "rootfs")+"\n") {
				t.Fatalf("lxc-copy -s config:\n%s", scfg)
			}
			s.mustStart()
			checkLayerContent(t, s)
			s.stop(false)
			checkIndependent(t, c, s)

			// Snapshot, change, restore: the snapshot's layer comes back.
			if out, err := c.lxc("lxc-snapshot"); err != nil {
				t.Fatalf("lxc-snapshot: %v %s", err, out)
			}
			c.mustStart()
			c.mustSh("echo after > /root/data && sync")
			c.stop(false)
			if out, err := c.lxc("lxc-snapshot", "-r", "snap0"); err != nil {
				t.Fatalf("lxc-snapshot -r: %v %s", err, out)
			}
			c.mustStart()
			if got := c.mustSh("cat /root/data"); got != "data\n" {
				t.Fatalf("after restoring the snapshot /root/data is %q", got)
			}
			c.stop(false)
			if out, err := c.lxc("lxc-snapshot", "-d", "snap0"); err != nil {
				t.Fatalf("lxc-snapshot -d: %v %s", err, out)
			}

			// A config copied by hand, without the layer: refused.
			e := other(c, c.name+"-cp")
			os.MkdirAll(filepath.Join(e.dir, "rootfs"), 0o755)
			cfg, _ := os.ReadFile(filepath.Join(c.dir, "config"))
			cfgS := strings.ReplaceAll(string(cfg), "lxc.rootfs.path = dir:"+c.dir, "lxc.rootfs.path = dir:"+e.dir)
			cfgS = strings.ReplaceAll(cfgS, "lxc.log.file = "+c.logFile, "lxc.log.file = "+e.logFile)
			os.WriteFile(filepath.Join(e.dir, "config"), []byte(cfgS), 0o644)
			if err := e.start(); err == nil {
				t.Fatal("a config copied without its layer started")
			}
			if log, _ := os.ReadFile(e.logFile); !strings.Contains(string(log), hook+" copy SRC DST") {
				t.Fatalf("refusal does not name the copy command:\n%s", lastLines(string(log), 10))
			}
			if out, err := e.lxc("lxc-destroy"); err != nil {
				t.Fatalf("lxc-destroy of the refused copy: %v %s", err, out)
			}

			// lxc-copy -R (rename) is a clone and a destroy.
			renamed := other(c, c.name+"-renamed")
			if out, err := d.lxc("lxc-copy", "-R", "-N", renamed.name); err != nil {
				t.Fatalf("lxc-copy -R: %v %s", err, out)
			}
			renamed.mustStart()
			checkLayerContent(t, renamed)
			renamed.stop(false)

			// lxc-destroy removes the default layer with the directory.
			layerPath := filepath.Join(renamed.dir, map[string]string{"lxc-hook-overlay": "layer", "lxc-hook-loopimg": "layer.img"}[hook])
			if out, err := renamed.lxc("lxc-destroy"); err != nil {
				t.Fatalf("lxc-destroy: %v %s", err, out)
			}
			if exists(layerPath) || exists(renamed.dir) {
				t.Fatalf("lxc-destroy left %s", renamed.dir)
			}
			assertNoLoops(t, workRoot, "after the LXC tools")
		})
	}
}

// An explicit --image/--upper outside the container's directory: lxc-copy
// gives the copy its own layer in its own directory, never the source's.
func TestLXCCopyExplicitLayer(t *testing.T) {
	requireEnv(t)
	for hook, extra := range copyHooks {
		t.Run(hook, func(t *testing.T) {
			c := initCtr(t, hook, extra...)
			flag, p := "--upper", filepath.Join(testDir(t), "upper")
			if hook == "lxc-hook-loopimg" {
				flag, p = "--image", filepath.Join(testDir(t), "x.img")
			}
			cfg, _ := os.ReadFile(filepath.Join(c.dir, "config"))
			cfgS := strings.ReplaceAll(string(cfg), " --lower ", " "+flag+" "+p+" --lower ")
			os.WriteFile(filepath.Join(c.dir, "config"), []byte(cfgS), 0o644)
			c.mustStart()
			writeLayerContent(c)
			c.stop(false)
			if out, err := c.lxc("lxc-copy", "-N", c.name+"-x"); err != nil {
				t.Fatalf("lxc-copy: %v %s", err, out)
			}
			d := other(c, c.name+"-x")
			dcfg, _ := os.ReadFile(filepath.Join(d.dir, "config"))
			if strings.Contains(string(dcfg), p) {
				t.Fatalf("the copy's config still names the source's layer %s:\n%s", p, dcfg)
			}
			d.mustStart()
			checkLayerContent(t, d)
			d.stop(false)
			checkIndependent(t, c, d)
		})
	}
}

// A hand-written config (no --config, no clone hook) with an explicit
// layer path, copied by lxc-copy: the copy names the source's very layer;
// its start is refused while the source still uses that layer, and it may
// take the layer over once the source is gone (a move).
func TestLXCCopyHandWrittenSharedLayer(t *testing.T) {
	requireEnv(t)
	for hook, args := range map[string][]string{
		"lxc-hook-overlay": {"--lower", tplSquash, "--upper", "UPPER"},
		"lxc-hook-loopimg": {"--lower", tplSquash, "--image", "UPPER", "--size", "48M"},
	} {
		t.Run(hook, func(t *testing.T) {
			p := filepath.Join(testDir(t), "layer")
			a := append([]string{}, args...)
			for i := range a {
				if a[i] == "UPPER" {
					a[i] = p
				}
			}
			c := newCtr(t, ctrOpts{hook: hook, args: a})
			c.mustStart()
			c.mustSh("echo mine > /root/mine && sync")
			c.stop(false)
			if out, err := c.lxc("lxc-copy", "-N", c.name+"-shared"); err != nil {
				t.Fatalf("lxc-copy: %v %s", err, out)
			}
			d := other(c, c.name+"-shared")
			d.logFile = c.logFile // lxc-copy keeps lxc.log.file as it was
			// A larger --size on the copy: refused before anything grows.
			dcfg, _ := os.ReadFile(filepath.Join(d.dir, "config"))
			os.WriteFile(filepath.Join(d.dir, "config"), []byte(strings.ReplaceAll(string(dcfg), "--size 48M", "--size 96M")), 0o644)
			var before int64
			if hook == "lxc-hook-loopimg" {
				before = apparentSize(t, p)
			}
			if err := d.start(); err == nil {
				t.Fatal("a copy sharing the source's layer started")
			}
			if log, _ := os.ReadFile(c.logFile); !strings.Contains(string(log), "belongs to the container of "+filepath.Join(c.dir, "config")) || !strings.Contains(string(log), hook+" copy SRC DST") {
				t.Fatalf("no refusal naming the owner and the copy command:\n%s", lastLines(string(log), 8))
			}
			if hook == "lxc-hook-loopimg" && apparentSize(t, p) != before {
				t.Fatalf("the refused copy grew the source's image from %d to %d", before, apparentSize(t, p))
			}
			c.mustStart() // the source still starts
			c.stop(false)
			// The source destroyed (its layer, outside its directory,
			// stays): the copy takes the layer over.
			if out, err := c.lxc("lxc-destroy"); err != nil {
				t.Fatalf("lxc-destroy: %v %s", err, out)
			}
			if !exists(p) {
				t.Fatalf("lxc-destroy removed the layer %s outside the container's directory", p)
			}
			d.mustStart()
			if got := d.mustSh("cat /root/mine"); got != "mine\n" {
				t.Fatalf("the layer taken over: %q", got)
			}
			d.stop(false)
		})
	}
}
