package admin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/progress"
	"github.com/lxc-hooks/lxc-hooks/pkg/template"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// oldRootfsName is where convert moves a container's rootfs, in the
// container's directory: kept until the user removes it.
const oldRootfsName = "rootfs.pre-convert"

const convertAbout = `Makes the stopped LXC container NAME, one with a directory rootfs (made by
lxc-create -t download, -t busybox, -t debian, ...), a container of these
hooks: its rootfs becomes the read-only template FILE (as template FILE
--from NAME builds it: FILE's name says the format), and its config gets
the hook lines init writes, over FILE, with a writable layer beside the
config. Everything else in the config stays (networking, mounts,
lxc.idmap: an unprivileged container stays unprivileged, its files get the
IDs the container saw in the template). The container's customisations
are in the template, so it boots as it did, with an empty layer; at that
first start it gets a new machine-id, as every new layer does.

The rootfs directory is then empty: the old one is moved to
rootfs.pre-convert beside it, kept until you remove it (rm -rf
LXCPATH/NAME/rootfs.pre-convert) once the container runs as you expect;
lxc-destroy removes it with the container, copy leaves it out. To undo
before that: move it back and restore the config from the lines convert
added at its end. FILE is never overwritten. A running container is
refused, and so is one that uses the hooks already.`

func cmdConvert(k Kind, args []string, stdout, stderr io.Writer) error {
	synopsis := "NAME --template FILE [--format FORMAT] [-P LXCPATH]"
	if k.Image {
		synopsis += " [--size SIZE] [--preallocate]"
	}
	fs := flags(k, "convert", synopsis, convertAbout, stdout)
	var s initSpec
	s.register(k, fs, false)
	format := fs.String("format", "", "`FORMAT` of the template: "+strings.Join(template.FormatNames(), ", ")+" (default: the one FILE's extension names)")
	lxcpath := fs.String("P", "", "`LXCPATH` of the container (default: LXC's lxc.lxcpath)")
	fs.StringVar(lxcpath, "lxcpath", "", "same as -P")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("give exactly one container NAME (see --help)")}
	}
	name := pos[0]
	if err := validName(name); err != nil {
		return err
	}
	if s.tpl == "" {
		return usageError{errors.New("--template FILE is required: the template the container's rootfs becomes")}
	}
	if *lxcpath == "" {
		*lxcpath = defaultLXCPath()
	}
	if abs, err := filepath.Abs(*lxcpath); err == nil {
		*lxcpath = abs
	}
	dir := filepath.Join(*lxcpath, name)
	cfg := filepath.Join(dir, "config")
	text, err := os.ReadFile(cfg)
	if err != nil {
		return fmt.Errorf("container %q: %w", name, err)
	}

	// What is checked before the template is built: a build takes
	// minutes, and a refusal after it would leave the user a template
	// and nothing else.
	if c, err := loadContainer(*lxcpath, name); err == nil {
		return fmt.Errorf("container %q uses %s already (%s): nothing to convert", name, c.Hook.Program, cfg)
	}
	if mentionsHooks(cfg) {
		return fmt.Errorf("container %q (%s) names one of the hooks already: nothing was changed; see %s status %s", name, cfg, k.Program, name)
	}
	v := hook.ConfigValues(strings.NewReader(string(text)), "lxc.rootfs.path", idmap.ConfigKey)
	rootfs := filepath.Join(dir, "rootfs")
	if got := hook.Last(v["lxc.rootfs.path"]); strings.TrimPrefix(got, "dir:") != rootfs {
		return fmt.Errorf("container %q: lxc.rootfs.path is %q; convert takes a container whose rootfs is the directory %s (LXC's default, -B dir)", name, got, rootfs)
	}
	if fi, err := os.Lstat(rootfs); err != nil || !fi.IsDir() {
		return fmt.Errorf("container %q: its rootfs %s is not a directory", name, rootfs)
	}
	old := filepath.Join(dir, oldRootfsName)
	if _, err := os.Lstat(old); err == nil {
		return fmt.Errorf("container %q: %s exists (the old rootfs of an earlier convert?): move it away first; nothing was changed", name, old)
	}
	m, err := idmap.ParseLXC(v[idmap.ConfigKey])
	if err != nil {
		return fmt.Errorf("container %q (%s): %w", name, cfg, err)
	}
	if m != nil {
		// The hooks' start refuses a mapping that gives the container
		// IDs a user or another range has; better now than after the build.
		if err := idmap.CheckHost(m, hostFiles); err != nil {
			return fmt.Errorf("container %q: %w; nothing was changed", name, err)
		}
	}
	if _, err := hookExecutable(k.Program); err != nil {
		return err
	}
	// The container's layer will live in its directory there: the LXC
	// path must pass the rule every start applies (package trust).
	lp, err := trust.OpenDir(filepath.Dir(dir), "LXC path")
	if err != nil {
		return err
	}
	lp.Close()
	if k.Program == "lxc-hook-aufs" && !hasAufs() && s.fallback == "" {
		return errors.New("this kernel has no AuFS, so every start of the converted container would be refused: use lxc-hook-overlay convert (or lxc-hook-loopimg convert), or add --fallback=overlay; nothing was changed")
	}
	if s.size != "" {
		if _, err := image.ParseSize(s.size); err != nil {
			return err
		}
	}
	file, err := filepath.Abs(s.tpl)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(file); err == nil {
		return fmt.Errorf("%s already exists: nothing was changed (a template is never overwritten; choose another name)", file)
	}
	f, err := template.FormatFor(s.tpl, *format)
	if err != nil {
		return usageError{err}
	}
	tdir, _, err := trust.Parent(file, "template FILE")
	if err != nil {
		return err
	}
	tdir.Close()

	src, release, err := resolveTemplateSource(name, *lxcpath)
	if err != nil {
		return err
	}
	defer release()
	t0 := time.Now()
	if err := template.Build(src, file, f, progress.New(stdout)); err != nil {
		return fmt.Errorf("building the template from %s: %w; nothing was changed", rootfs, err)
	}
	s.tpl = file
	kept := fmt.Sprintf("; the template %s was written and stays, the container was not changed", file)
	p, err := s.plan(k, name, dir, stdout, stderr)
	if err != nil {
		return fmt.Errorf("%w%s", err, kept)
	}
	p.cmd, p.by, p.idm = "convert", "convert", m
	newText := p.convertedConfig(string(text))

	// The old rootfs moves aside, whole, on its own filesystem (a rename);
	// an empty directory with its owner and mode takes its place.
	undo := func() {
		os.Remove(rootfs) // the empty directory made here
		os.Rename(old, rootfs)
	}
	if err := os.Rename(rootfs, old); err != nil {
		return fmt.Errorf("moving %s aside: %w%s", rootfs, err, kept)
	}
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		undo()
		return fmt.Errorf("%w%s", err, kept)
	}
	if err := sameOwnerAndMode(old, rootfs); err != nil {
		undo()
		return fmt.Errorf("%w%s", err, kept)
	}
	var dirStat unix.Stat_t
	if err := unix.Lstat(dir, &dirStat); err != nil {
		undo()
		return fmt.Errorf("%s: %w%s", dir, err, kept)
	}
	undoDir := func() {
		unix.Lchown(dir, int(dirStat.Uid), int(dirStat.Gid))
		unix.Chmod(dir, dirStat.Mode&0o7777)
	}
	if err := p.closeDir(); err != nil {
		undoDir()
		undo()
		return fmt.Errorf("%w%s", err, kept)
	}
	if err := replaceFile(cfg, []byte(newText)); err != nil {
		undoDir()
		undo()
		return fmt.Errorf("writing the config: %w%s", err, kept)
	}
	layerNote := "created at its first start"
	if err := p.createImage(stdout); err != nil {
		// The container is converted; its first start makes the image.
		fmt.Fprintf(stderr, "%s convert: the image could not be created now (%v): its first start creates it\n", k.Program, err)
	} else if p.preallocate {
		layerNote = "created and preallocated"
	}
	size := ""
	if fi, err := os.Stat(file); err == nil && fi.Mode().IsRegular() {
		size = ", " + image.Human(fi.Size())
	}
	fmt.Fprintf(stdout, "Container %s converted in %.1fs: its root is the template %s (%s%s) with a writable layer (%s) beside its config.\n", name, time.Since(t0).Seconds(), file, f.Name, size, layerNote)
	fmt.Fprintf(stdout, "Its old rootfs is kept at %s: remove it (rm -rf %s) once the container runs as you expect.\n", old, hook.Quote(old))
	fmt.Fprintf(stdout, "Start it with: lxc-start -n %s", hook.Quote(name))
	if *lxcpath != defaultLXCPath() {
		fmt.Fprintf(stdout, " -P %s", hook.Quote(*lxcpath))
	}
	fmt.Fprintln(stdout)
	p.warn(stderr, nil)
	return nil
}

// convertedConfig is the container's config text with the hook lines
// added at its end, and lxc.rootfs.options idmap= turned into a comment:
// LXC cannot idmap a rootfs with overlayfs mounted over it (EINVAL); the
// hooks map an unprivileged container's layers themselves.
func (p *initPlan) convertedConfig(text string) string {
	lines := strings.SplitAfter(text, "\n")
	for i, line := range lines {
		key, val, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(key) == "lxc.rootfs.options" && strings.Contains(val, "idmap=") {
			lines[i] = "# " + strings.TrimRight(line, "\n") + "  (convert: the hooks idmap the layers themselves)\n"
		}
	}
	out := strings.Join(lines, "")
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	var b strings.Builder
	b.WriteString(out)
	fmt.Fprintf(&b, "\n# Converted by %s convert on %s: the root is the read-only template\n# %s, built from this container's rootfs (the old rootfs is\n# %s until you remove it), with a writable layer beside this file.\n",
		p.k.Program, time.Now().UTC().Format("2006-01-02"), p.tpl, filepath.Join(p.dir, oldRootfsName))
	writeLogLines(&b, p.k.Program, p.name, p.dir, text)
	p.hookLines(&b)
	return b.String()
}
