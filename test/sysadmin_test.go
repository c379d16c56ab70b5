package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	adminpkg "github.com/lxc-hooks/lxc-hooks/pkg/admin"
	"github.com/lxc-hooks/lxc-hooks/pkg/execs"
)

// onTerminal runs an operator command of a hook binary with its stdin,
// stdout and stderr on a pseudo-terminal of its own, 100 columns wide, as
// a person at a terminal runs it, and returns what the terminal showed.
func onTerminal(t *testing.T, hook string, args ...string) (string, error) {
	t.Helper()
	master, tty, err := execs.OpenPTY(100)
	if err != nil {
		t.Fatalf("a pty for the command: %v", err)
	}
	defer master.Close()
	cmd := exec.Command(filepath.Join(binDir, hook), args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if coverDir != "" {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+coverDir)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if err := cmd.Start(); err != nil {
		tty.Close()
		t.Fatal(err)
	}
	tty.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(&out, master) // ends with EIO once the command is gone
	}()
	err = cmd.Wait()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the pty stayed open 10 s after %s %v ended", hook, args)
	}
	return out.String(), err
}

// progressShown is whether out has a progress line: one redrawn with \r.
func progressShown(out string) bool {
	return strings.Contains(out, "\r") && strings.Contains(out, "\x1b[K")
}

func wantAll(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: no %q in what the terminal showed:\n%q", what, w, out)
		}
	}
}

// Every long command shows its progress on a terminal, from the tools'
// own figures: template (mksquashfs's bar, mkfs.erofs's files, cp's bytes
// read, the tarball's bytes read), init --preallocate (fallocate,
// mke2fs), offline resize (e2fsck's passes, resize2fs), copy (bytes,
// e2fsck -fn). With stdout a pipe, none of it: the output is as before.
func TestProgressOnTerminal(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tarball := filepath.Join(dir, "rootfs.tar.gz")
	if out, err := exec.Command("tar", "--create", "--gzip", "--file", tarball, "--directory", tplDir, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	cases := []struct {
		out, from string
		want      []string
	}{
		{"t.squashfs", tplDir, []string{"writing the template (squashfs-lz4): ", " blocks (", " blocks (100%), done in "}},
		{"t/", tplDir, []string{"copying the files: ", "(100%), done in "}},
		{"tb.squashfs", tarball, []string{"extracting rootfs.tar.gz: ", "of ", "(100%), done in ", "writing the template (squashfs-lz4): "}},
	}
	if _, err := exec.LookPath("mkfs.erofs"); err == nil {
		cases = append(cases, struct {
			out, from string
			want      []string
		}{"t.erofs", tplDir, []string{"writing the template (erofs): ", " files (100%), done in "}})
	} else {
		t.Log("no mkfs.erofs (erofs-utils): the erofs template's progress is not checked")
	}
	for _, tc := range cases {
		out, err := onTerminal(t, "lxc-hook-loopimg", "template", dir+"/tty-"+tc.out, "--from", tc.from)
		if err != nil {
			t.Fatalf("template %s on a terminal: %v\n%s", tc.out, err, out)
		}
		if !progressShown(out) {
			t.Errorf("template %s on a terminal: no progress line:\n%q", tc.out, out)
		}
		wantAll(t, "template "+tc.out, out, append(tc.want, "Template "+dir+"/tty-")...)
		out, err = admin(t, "lxc-hook-loopimg", "template", dir+"/pipe-"+tc.out, "--from", tc.from)
		if err != nil {
			t.Fatalf("template %s: %v\n%s", tc.out, err, out)
		}
		if progressShown(out) || strings.Contains(out, "done in") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("template %s into a pipe: more than the one line it writes:\n%q", tc.out, out)
		}
	}

	lxcpath := filepath.Join(dir, "lxc")
	defaults := filepath.Join(dir, "default.conf")
	os.WriteFile(defaults, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"), 0o644)
	name := uniqueName("tty")
	out, err := onTerminal(t, "lxc-hook-loopimg", "init", name, "--template", tplSquash, "-P", lxcpath, "--default-config", defaults, "--size", "64M", "--preallocate")
	if err != nil {
		t.Fatalf("init --preallocate on a terminal: %v\n%s", err, out)
	}
	wantAll(t, "init --preallocate", out, "reserving 64M on the host (fallocate): done in", "formatting the image (mke2fs): ", "Container "+name+" written")
	img := filepath.Join(lxcpath, name, "layer.img")
	var st syscall.Stat_t
	if err := syscall.Stat(img, &st); err != nil || st.Size != 64<<20 || st.Blocks*512 < 64<<20 {
		t.Fatalf("init --preallocate: the image %s is not 64M reserved: %+v %v", img, st, err)
	}
	cfg, _ := os.ReadFile(filepath.Join(lxcpath, name, "config"))
	if !strings.Contains(string(cfg), "--size 64M --preallocate") {
		t.Fatalf("init --preallocate: the hook lines lack --preallocate:\n%s", cfg)
	}
	// Without a terminal: the image is made as well, silently.
	quiet := uniqueName("pipe")
	if out, err := admin(t, "lxc-hook-loopimg", "init", quiet, "--template", tplSquash, "-P", lxcpath, "--default-config", defaults, "--size", "32M", "--preallocate"); err != nil || progressShown(out) || strings.Contains(out, "mke2fs") {
		t.Fatalf("init --preallocate into a pipe: %v\n%q", err, out)
	}
	if !exists(filepath.Join(lxcpath, quiet, "layer.img")) {
		t.Fatal("init --preallocate into a pipe made no image")
	}

	c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name), logFile: filepath.Join(lxcpath, name, name+".log")}
	t.Cleanup(func() {
		if c.state() != "STOPPED" {
			exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
		}
	})
	c.mustStart()
	c.mustSh("echo kept > /root/kept && sync")
	if kb := c.dfKB(); kb > 64*1024 || kb < 48*1024 {
		t.Fatalf("df / in the container of the image init made: %d KiB for 64M", kb)
	}
	c.stop(true)

	out, err = onTerminal(t, "lxc-hook-loopimg", "resize", name, "--size", "96M", "-P", lxcpath)
	if err != nil {
		t.Fatalf("offline resize on a terminal: %v\n%s", err, out)
	}
	if !progressShown(out) {
		t.Errorf("offline resize on a terminal: no progress line:\n%q", out)
	}
	wantAll(t, "offline resize", out, "reserving 96M on the host (fallocate): done in", "checking the image (e2fsck): pass 1 of 5", "(100%), done in", "growing the filesystem (resize2fs): done in", name+" grown from")
	out, err = admin(t, "lxc-hook-loopimg", "resize", name, "--size", "112M", "-P", lxcpath)
	if err != nil || progressShown(out) || strings.Contains(out, "e2fsck") {
		t.Fatalf("offline resize into a pipe: %v\n%q", err, out)
	}
	fsckClean(t, img, "after the resizes")

	copyName := uniqueName("ttycopy")
	out, err = onTerminal(t, "lxc-hook-loopimg", "copy", name, copyName, "-P", lxcpath)
	if err != nil {
		t.Fatalf("copy on a terminal: %v\n%s", err, out)
	}
	wantAll(t, "copy", out, "copying the layer: ", "(100%), done in", "checking the copy (e2fsck -fn): ", "copied to "+copyName)
	out, err = admin(t, "lxc-hook-loopimg", "copy", name, uniqueName("pipecopy"), "-P", lxcpath)
	if err != nil || progressShown(out) || strings.Contains(out, "copying the layer:") {
		t.Fatalf("copy into a pipe: %v\n%q", err, out)
	}
	c.mustStart()
	if got := c.mustSh("cat /root/kept"); got != "kept\n" {
		t.Fatalf("after the resizes: %q", got)
	}
	if kb := c.dfKB(); kb < 96*1024 {
		t.Fatalf("df / after the resize to 112M: %d KiB", kb)
	}
	c.stop(true)
}

// configLines are a config's settings, comments and blank lines left out,
// with the container's name replaced by NAME.
func configLines(t *testing.T, path, name string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, strings.ReplaceAll(l, name, "NAME"))
	}
	return out
}

// templateLink is LXC's template of hook (lxc-hooks-loopimg), a link to
// the test build, where lxc-create -t takes it by its full path.
func templateLink(t *testing.T, dir, hook string) string {
	t.Helper()
	p := filepath.Join(dir, adminpkg.TemplateName(hook))
	if err := os.Symlink(filepath.Join(binDir, hook), p); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	return p
}

// lxc-create -t hooks-X makes the container init makes: the same config
// lines and hook lines, keeping lxc-create's -f config; it starts, keeps
// its writes, and lxc-destroy removes it with its layer. -h lists the
// options; a refused creation (no such template, lxc.idmap in lxc-create's
// config) leaves nothing; -- --unprivileged gives the container its
// mapping and pre-start, as init --unprivileged.
func TestLXCCreateTemplate(t *testing.T) {
	requireEnv(t)
	if _, err := exec.LookPath("lxc-create"); err != nil {
		t.Skip("lxc-create is not installed")
	}
	dir := testDir(t)
	lxcpath := filepath.Join(dir, "lxc")
	os.MkdirAll(lxcpath, 0o755)
	defaults := filepath.Join(dir, "default.conf")
	os.WriteFile(defaults, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"), 0o644)
	for _, hook := range []string{"lxc-hook-loopimg", "lxc-hook-overlay"} {
		t.Run(hook, func(t *testing.T) {
			tpl := templateLink(t, dir, hook)
			extra := map[string][]string{"lxc-hook-loopimg": {"--size", "48M"}}[hook]
			name := uniqueName("lc")
			args := append([]string{"-P", lxcpath, "-f", defaults, "-n", name, "-t", tpl, "--", "--template", tplSquash}, extra...)
			if out, err := exec.Command("lxc-create", args...).CombinedOutput(); err != nil {
				t.Fatalf("lxc-create -t %s: %v\n%s", tpl, err, out)
			}
			ref := uniqueName("li")
			if out, err := admin(t, hook, append([]string{"init", ref, "--template", tplSquash, "-P", lxcpath, "--default-config", defaults}, extra...)...); err != nil {
				t.Fatalf("init: %v %s", err, out)
			}
			got := configLines(t, filepath.Join(lxcpath, name, "config"), name)
			want := configLines(t, filepath.Join(lxcpath, ref, "config"), ref)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("lxc-create's container differs from init's:\n%s\n--- init's:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name), logFile: filepath.Join(lxcpath, name, name+".log")}
			t.Cleanup(func() {
				if c.state() != "STOPPED" {
					exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
				}
			})
			c.mustStart()
			c.mustSh("echo persisted > /root/p")
			c.stop(false)
			c.mustStart()
			if got := c.mustSh("cat /root/p"); got != "persisted\n" {
				t.Fatalf("after restart: %q", got)
			}
			if hook == "lxc-hook-loopimg" {
				if kb := c.dfKB(); kb > 48*1024 || kb < 32*1024 {
					t.Fatalf("df / shows %d KiB for a 48M cap", kb)
				}
			}
			c.stop(true)
			if out, err := exec.Command("lxc-destroy", "-P", lxcpath, "-n", name).CombinedOutput(); err != nil {
				t.Fatalf("lxc-destroy: %v %s", err, out)
			}
			if exists(c.dir) {
				t.Fatalf("lxc-destroy left %s", c.dir)
			}
		})
	}

	tpl := templateLink(t, dir, "lxc-hook-loopimg")
	help, _ := exec.Command("lxc-create", "-t", tpl, "-h").CombinedOutput()
	for _, w := range []string{"lxc-create -n NAME -t hooks-loopimg", "-template FILE", "-size SIZE", "-preallocate", "-unprivileged"} {
		if !strings.Contains(string(help), w) {
			t.Errorf("lxc-create -t hooks-loopimg -h: no %q:\n%s", w, help)
		}
	}

	for _, tc := range []struct {
		what, config, template, want string
	}{
		{"no such template", "", "/nonexistent/tpl.squashfs", `lower "/nonexistent/tpl.squashfs" does not exist`},
		{"lxc.idmap in lxc-create's config", "lxc.idmap = " + unprivMap + "\nlxc.idmap = " + unprivGMap + "\n", tplSquash, "user namespace"},
	} {
		name := uniqueName("lcbad")
		cfg := filepath.Join(dir, name+".conf")
		os.WriteFile(cfg, []byte("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"+tc.config), 0o644)
		out, err := exec.Command("lxc-create", "-P", lxcpath, "-f", cfg, "-n", name, "-t", tpl, "--", "--template", tc.template).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("lxc-create with %s: %v, want a failure naming %q:\n%s", tc.what, err, tc.want, out)
		}
		if exists(filepath.Join(lxcpath, name)) {
			t.Errorf("lxc-create with %s left %s", tc.what, filepath.Join(lxcpath, name))
		}
	}

	// --unprivileged, with root's range the test block (bound over
	// /etc/subuid and /etc/subgid for the command), as init --unprivileged.
	if err := os.Chmod(workRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o711)
	name := uniqueName("lcu")
	sub := fmt.Sprintf("root:%d:65536\n", unprivBase)
	out, err := runWithSubIDs(t, sub, sub, "lxc-create", "-P", lxcpath, "-f", defaults, "-n", name, "-t", tpl, "--", "--template", tplSquash, "--size", "48M", "--unprivileged")
	if err != nil {
		t.Fatalf("lxc-create -- --unprivileged: %v\n%s", err, out)
	}
	cdir := filepath.Join(lxcpath, name)
	cfg, _ := os.ReadFile(filepath.Join(cdir, "config"))
	for _, w := range []string{"lxc.idmap = " + unprivMap, "lxc.hook.pre-start = ", "lxc.hook.stop = "} {
		if !strings.Contains(string(cfg), w) {
			t.Fatalf("lxc-create -- --unprivileged: no %q in the config:\n%s", w, cfg)
		}
	}
	if strings.Contains(string(cfg), "lxc.hook.pre-mount") {
		t.Fatalf("lxc-create -- --unprivileged: pre-mount in the config:\n%s", cfg)
	}
	if uid, gid, mode := ownerAndMode(t, cdir); uid != 0 || gid != unprivBase || mode != 0o710 {
		t.Fatalf("lxc-create -- --unprivileged: %s is %d:%d %o, want 0:%d 0710", cdir, uid, gid, mode, unprivBase)
	}
	c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: cdir, logFile: filepath.Join(cdir, name+".log")}
	t.Cleanup(func() {
		if c.state() != "STOPPED" {
			exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
		}
	})
	c.mustStart()
	if got := c.mustSh("touch /root/u && stat -c %u /root/u"); got != "0\n" {
		t.Fatalf("inside the unprivileged container, a new file is uid %q", got)
	}
	c.stop(true)
}

// treeDigest lists every entry under root (path, type, mode, owner, size,
// content digest of regular files, link target), to compare two trees.
func treeDigest(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		e := fmt.Sprintf("%s %o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		switch {
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			e += " " + strconv.Itoa(len(b)) + " " + hex.EncodeToString(sum[:8])
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			e += " -> " + l
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// A container of LXC's own (lxc-create -t busybox, which works offline)
// with a directory rootfs is converted: its rootfs becomes the template,
// its config gets the hook lines and keeps the rest, the rootfs directory
// is empty and the old one is kept whole beside it; it boots with its
// customisations, keeps new writes in its layer; a running one and one
// converted already are refused. Privileged with loopimg, unprivileged
// with overlay.
func TestConvertLXCContainer(t *testing.T) {
	requireEnv(t)
	if _, err := exec.LookPath("lxc-create"); err != nil {
		t.Skip("lxc-create is not installed")
	}
	if !exists("/usr/share/lxc/templates/lxc-busybox") {
		t.Skip("LXC's busybox template is not installed")
	}
	// An unprivileged container's root must reach its directory.
	if err := os.Chmod(workRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	lxcpath := filepath.Join(workRoot, "lxc")
	os.MkdirAll(lxcpath, 0o755)
	dir := testDir(t)
	for _, tc := range []struct {
		name, hook string
		unpriv     bool
		extra      []string
	}{
		{"privileged-loopimg", "lxc-hook-loopimg", false, []string{"--size", "48M"}},
		{"unprivileged-overlay", "lxc-hook-overlay", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := uniqueName("cv")
			conf := "lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"
			if tc.unpriv {
				conf += "lxc.idmap = " + unprivMap + "\nlxc.idmap = " + unprivGMap + "\n"
			}
			cfgFile := filepath.Join(dir, name+".conf")
			os.WriteFile(cfgFile, []byte(conf), 0o644)
			if out, err := exec.Command("lxc-create", "-P", lxcpath, "-f", cfgFile, "-n", name, "-t", "busybox").CombinedOutput(); err != nil {
				t.Fatalf("lxc-create -t busybox: %v\n%s", err, out)
			}
			c := &ctr{t: t, name: name, lxcpath: lxcpath, dir: filepath.Join(lxcpath, name), rootfs: filepath.Join(lxcpath, name, "rootfs"), logFile: filepath.Join(lxcpath, name, name+".log")}
			t.Cleanup(func() {
				if c.state() != "STOPPED" {
					exec.Command("lxc-stop", "-k", "-n", c.name, "-P", c.lxcpath).Run()
				}
				exec.Command("lxc-destroy", "-P", lxcpath, "-n", name).Run()
			})
			// The container's customisations: a file its root writes
			// while it runs, one owned by its uid 1000.
			if out, err := c.lxc("lxc-start"); err != nil {
				t.Fatalf("lxc-start of the busybox container: %v %s", err, out)
			}
			c.mustSh("echo custom > /etc/custom && mkdir -p /home/u && echo u > /home/u/f && chown -R 1000:1000 /home/u && sync")
			template := filepath.Join(dir, tc.name+".squashfs")
			out, err := admin(t, tc.hook, append([]string{"convert", name, "-P", lxcpath, "--template", template}, tc.extra...)...)
			if err == nil || !strings.Contains(out, "RUNNING") || exists(template) {
				t.Fatalf("convert of a running container: %v %s (template written: %v)", err, out, exists(template))
			}
			c.stop(true)
			before := treeDigest(t, c.rootfs)
			cfgBefore := configLines(t, filepath.Join(c.dir, "config"), name)

			out, err = admin(t, tc.hook, append([]string{"convert", name, "-P", lxcpath, "--template", template}, tc.extra...)...)
			if err != nil {
				t.Fatalf("convert: %v\n%s", err, out)
			}
			old := filepath.Join(c.dir, "rootfs.pre-convert")
			if !strings.Contains(out, "old rootfs is kept at "+old) {
				t.Errorf("convert does not say where the old rootfs is: %s", out)
			}
			if ents, err := os.ReadDir(c.rootfs); err != nil || len(ents) != 0 {
				t.Fatalf("after convert the rootfs directory holds %v (%v), want nothing", ents, err)
			}
			if after := treeDigest(t, old); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Fatalf("the old rootfs kept at %s differs from the rootfs before the convert", old)
			}
			// Every line of the config is kept; the hook lines are added.
			cfgAfter := configLines(t, filepath.Join(c.dir, "config"), name)
			for _, l := range cfgBefore {
				found := false
				for _, a := range cfgAfter {
					found = found || a == l
				}
				if !found {
					t.Errorf("convert dropped the config line %q", l)
				}
			}
			startKey := "lxc.hook.pre-mount = "
			if tc.unpriv {
				startKey = "lxc.hook.pre-start = "
			}
			joined := strings.Join(cfgAfter, "\n")
			for _, w := range []string{startKey + filepath.Join(binDir, tc.hook), "lxc.hook.stop = ", "lxc.hook.clone = ", "--lower " + template} {
				if !strings.Contains(joined, w) {
					t.Errorf("the converted config has no %q:\n%s", w, joined)
				}
			}
			// The template holds the container's files, with the IDs the
			// container saw.
			root := mountTemplate(t, template)
			if b, err := os.ReadFile(filepath.Join(root, "etc", "custom")); err != nil || string(b) != "custom\n" {
				t.Fatalf("the template's /etc/custom: %q %v", b, err)
			}
			if uid, _ := ownerOf(t, filepath.Join(root, "home", "u", "f")); uid != 1000 {
				t.Fatalf("the template's /home/u/f is uid %d, want 1000 (the container's)", uid)
			}

			c.mustStart()
			if got := c.mustSh("cat /etc/custom; stat -c %u /home/u/f"); got != "custom\n1000\n" {
				t.Fatalf("the converted container sees %q", got)
			}
			c.mustSh("echo after > /root/after && sync")
			c.stop(true)
			if ents, _ := os.ReadDir(c.rootfs); len(ents) != 0 {
				t.Fatalf("the rootfs directory holds %v after a start and stop", ents)
			}
			c.mustStart()
			if got := c.mustSh("cat /root/after"); got != "after\n" {
				t.Fatalf("a write after the convert, after a restart: %q", got)
			}
			c.stop(true)
			if _, err := os.Stat(filepath.Join(old, "root", "after")); err == nil {
				t.Fatal("a write after the convert landed in the old rootfs")
			}
			out, err = admin(t, tc.hook, "convert", name, "-P", lxcpath, "--template", filepath.Join(dir, name+"-again.squashfs"))
			if err == nil || !strings.Contains(out, "already") || exists(filepath.Join(dir, name+"-again.squashfs")) {
				t.Fatalf("a second convert: %v %s", err, out)
			}
			if !tc.unpriv {
				// copy leaves the old rootfs out: the template holds it.
				cp := uniqueName("cvcopy")
				if out, err := admin(t, tc.hook, "copy", name, cp, "-P", lxcpath); err != nil {
					t.Fatalf("copy of the converted container: %v %s", err, out)
				}
				t.Cleanup(func() { exec.Command("lxc-destroy", "-P", lxcpath, "-n", cp).Run() })
				if exists(filepath.Join(lxcpath, cp, "rootfs.pre-convert")) {
					t.Fatal("copy copied the old rootfs")
				}
			}
		})
	}
}
