package admin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// TemplateName is the LXC template of binary program: lxc-create -t
// hooks-loopimg runs /usr/share/lxc/templates/lxc-hooks-loopimg, a link
// to lxc-hook-loopimg, which answers to that name as lxc-template.
func TemplateName(program string) string {
	return "lxc-hooks-" + strings.TrimPrefix(program, "lxc-hook-")
}

// lxcTemplateFlag is "hooks-loopimg", as lxc-create -t takes it.
func lxcTemplateFlag(program string) string {
	return strings.TrimPrefix(TemplateName(program), "lxc-")
}

const lxcTemplateAbout = `The LXC template of these hooks, which lxc-create runs:

  lxc-create -n NAME -t %[1]s [-P LXCPATH] [-f CONFIG] -- --template FILE%[2]s

LXC finds it as /usr/share/lxc/templates/lxc-%[1]s (a link to this
binary). lxc-create makes the container's directory, an empty rootfs
directory and a first config from LXC's default config (or -f CONFIG), then
runs this with --path, --name and --rootfs and the flags after "--". It
writes into that directory the container init writes, with init's checks
(the template and the binary LXC will run are root's alone, the kernel has
what the hooks need): the same config and hook lines, keeping the lines
lxc-create wrote (networking, and those of -f CONFIG), except the rootfs,
which must be lxc-create's default, a directory in the container's
directory (-B dir). lxc-create adds its comment at the top and removes the
container again if this fails. lxc-destroy removes it as any container.

A config with lxc.idmap makes lxc-create run the template in a user
namespace (--mapped-uid), where nothing root's can be written: it is
refused; leave lxc.idmap out and pass --unprivileged or --isolated, which
give the container its mapping as init does. lxc-create -t %[1]s -h
shows this help.`

// lxcTemplateNote is what lxc-create leaves in a directory while it makes
// a container (create_partial in LXC's lxccontainer.c): this command only
// completes a creation in progress, never rewrites a finished container.
const lxcTemplateNote = "partial"

func cmdLXCTemplate(k Kind, args []string, stdout, stderr io.Writer) error {
	extra := ""
	if k.Image {
		extra = " [--size SIZE]"
	}
	about := fmt.Sprintf(lxcTemplateAbout, lxcTemplateFlag(k.Program), extra)
	fs := flags(k, "lxc-template", "--path DIR --name NAME --rootfs DIR [init's flags] (run by lxc-create)", about, stdout)
	path := fs.String("path", "", "the container's directory `DIR`, LXCPATH/NAME (given by lxc-create)")
	name := fs.String("name", "", "the container's `NAME` (given by lxc-create)")
	rootfs := fs.String("rootfs", "", "its rootfs directory `DIR` (given by lxc-create)")
	mappedUID := fs.String("mapped-uid", "", "the `UID` lxc-create gives a template it runs in a user namespace: refused (see above)")
	mappedGID := fs.String("mapped-gid", "", "the `GID` likewise")
	var s initSpec
	s.register(k, fs, true)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (see --help)", pos[0])}
	}
	if *mappedUID != "" || *mappedGID != "" {
		return fmt.Errorf("lxc-create runs this template in a user namespace (--mapped-uid %s), because its config has lxc.idmap: a hook-managed container is written by host root; leave lxc.idmap out of the config given to lxc-create and pass -- --unprivileged (or --isolated), which gives the container its mapping", *mappedUID)
	}
	if *path == "" || *name == "" {
		return usageError{fmt.Errorf("lxc-template completes a container lxc-create is making (lxc-create -n NAME -t %s -- --template FILE); to write one by hand, use %s init", lxcTemplateFlag(k.Program), k.Program)}
	}
	dir := filepath.Clean(*path)
	if !filepath.IsAbs(dir) || filepath.Base(dir) != *name {
		return fmt.Errorf("--path %q is not an absolute LXCPATH/%s", *path, *name)
	}
	if _, err := os.Lstat(filepath.Join(dir, lxcTemplateNote)); err != nil {
		return fmt.Errorf("%s is no container lxc-create is making (no %s file in it): lxc-template only completes a creation by lxc-create -t %s; nothing was changed", dir, lxcTemplateNote, lxcTemplateFlag(k.Program))
	}
	cfg := filepath.Join(dir, "config")
	text, err := os.ReadFile(cfg)
	if err != nil {
		return fmt.Errorf("the config lxc-create wrote: %w", err)
	}
	v := hook.ConfigValues(strings.NewReader(string(text)), "lxc.rootfs.path", idmap.ConfigKey)
	want := filepath.Join(dir, "rootfs")
	got := hook.Last(v["lxc.rootfs.path"])
	if strings.TrimPrefix(got, "dir:") != want || (*rootfs != "" && filepath.Clean(*rootfs) != want) {
		return fmt.Errorf("lxc-create made the rootfs %q (lxc.rootfs.path = %s): the hooks mount the container's root over a rootfs directory in its own directory, %s; use lxc-create's default backing store (-B dir, no --dir)", *rootfs, got, want)
	}
	if len(v[idmap.ConfigKey]) > 0 {
		return errors.New("the config lxc-create wrote has lxc.idmap: leave it out of lxc-create's config and pass -- --unprivileged (or --isolated), which gives the container its mapping")
	}
	if ents, err := os.ReadDir(want); err != nil || len(ents) > 0 {
		return fmt.Errorf("the rootfs directory %s is not an empty directory: the hooks mount the container's root over it", want)
	}
	p, err := s.plan(k, *name, dir, stdout, stderr)
	if err != nil {
		return err
	}
	// The container's layer will live in its directory there: the LXC
	// path must pass the rule every start applies (package trust).
	lp, err := trust.OpenDir(filepath.Dir(dir), "LXC path")
	if err != nil {
		return err
	}
	lp.Close()
	defer p.unlock()
	p.cmd, p.by = "lxc-template", "lxc-template (lxc-create -t "+lxcTemplateFlag(k.Program)+")"
	// LXC's lines stay, but for those init writes itself.
	var keep []string
	for _, line := range strings.Split(string(text), "\n") {
		key, _, _ := strings.Cut(line, "=")
		switch strings.TrimSpace(key) {
		case "lxc.rootfs.path", "lxc.uts.name", "lxc.utsname":
			continue
		}
		keep = append(keep, line)
	}
	defaults := strings.Join(keep, "\n")
	if err := p.closeDir(); err != nil {
		return err
	}
	if err := replaceFile(cfg, []byte(p.config(defaults, "From lxc-create: LXC's default config, or lxc-create -f"))); err != nil {
		return err
	}
	if err := p.createImage(stdout); err != nil {
		return err // lxc-create removes the container
	}
	fmt.Fprintf(stdout, "Container %s: %s writes its layer over the template %s; start it with: lxc-start -n %s", *name, k.Program, p.tpl, hook.Quote(*name))
	if lxcpath := filepath.Dir(dir); lxcpath != defaultLXCPath() {
		fmt.Fprintf(stdout, " -P %s", hook.Quote(lxcpath))
	}
	fmt.Fprintln(stdout)
	p.warn(stderr, missingBridges(defaults, "the config lxc-create wrote", "/sys/class/net"))
	return nil
}
