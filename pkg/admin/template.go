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

	"github.com/lxc-hooks/lxc-hooks/pkg/execs"
	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/layer"
	"github.com/lxc-hooks/lxc-hooks/pkg/progress"
	"github.com/lxc-hooks/lxc-hooks/pkg/template"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

const templateAbout = `Writes a read-only template FILE for init --template, from SOURCE:
  a directory                         a root filesystem as it is
  a rootfs tarball                    .tar, .tar.gz, .tar.xz, .tar.zst (e.g. the
                                      LXC image server's rootfs.tar.xz)
  a template image                    squashfs, erofs or ext4: converted, e.g. to
                                      a format that boots faster
  the NAME of a stopped container     one with a dir rootfs (lxc-create -t ...),
                                      or one of these hooks: its template and
                                      writable layer flattened (deletions
                                      applied), so a customised container
                                      becomes the template of the next ones;
                                      an unprivileged one's files (stored
                                      with its lxc.idmap's host IDs) get the
                                      IDs the container saw
The template keeps numeric owners, modes (setuid too), file capabilities and
other xattrs (not overlayfs's own), device nodes, fifos, hardlinks, symlinks,
holes of sparse files and modification times; /etc/machine-id comes out
empty (the source is not changed), so that each container makes its own at
its first boot. An existing FILE is never overwritten: the template is
written under a temporary name beside it and renamed. A running container is refused (its files change while they are
read): stop it first.

FILE's name says the format, and --format must agree with it:
  NAME.erofs          erofs, uncompressed (or --format erofs-lz4, erofs-lz4hc)
  NAME.squashfs       squashfs with lz4 (also .sqfs; or --format squashfs-zstd,
                      squashfs-gzip, squashfs-xz)
  NAME/               a directory
A name that says no format (no extension, another one, .img) needs --format;
ext4 templates are used as they are, not written.

Formats:
`

func cmdTemplate(k Kind, args []string, stdout io.Writer) error {
	about := templateAbout
	for _, f := range template.Formats {
		about += fmt.Sprintf("  %-15s %s\n", f.Name, f.About)
	}
	fs := flags(k, "template", "FILE --from SOURCE [--format FORMAT] [-P LXCPATH]", strings.TrimRight(about, "\n"), stdout)
	from := fs.String("from", "", "`SOURCE`: a directory, a tarball, a template image, or a container name")
	format := fs.String("format", "", "`FORMAT` of the template: "+strings.Join(template.FormatNames(), ", ")+" (default: the one FILE's extension names)")
	lxcpath := fs.String("P", "", "`LXCPATH` of a container SOURCE (default: LXC's lxc.lxcpath)")
	fs.StringVar(lxcpath, "lxcpath", "", "same as -P")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("give exactly one template FILE to write (see --help)")}
	}
	if *from == "" {
		return usageError{errors.New("--from SOURCE is required (see --help)")}
	}
	file, err := filepath.Abs(pos[0])
	if err != nil {
		return err
	}
	if _, err := os.Lstat(file); err == nil {
		return fmt.Errorf("%s already exists: nothing was changed (a template is never overwritten; choose another name)", file)
	}
	f, err := template.FormatFor(pos[0], *format)
	if err != nil {
		return usageError{err}
	}
	// The template is written beside FILE and used from there by host
	// root: directories others can change would get it refused by init
	// and every start (package trust), after the whole build. (A sticky
	// root-owned directory such as /tmp passes: others cannot replace
	// root's entries there.)
	dir, _, err := trust.Parent(file, "template FILE")
	if err != nil {
		return err
	}
	dir.Close()
	src, release, err := resolveTemplateSource(*from, *lxcpath)
	if err != nil {
		return err
	}
	defer release()
	start := time.Now()
	if err := template.Build(src, file, f, progress.New(stdout)); err != nil {
		return fmt.Errorf("from %s: %w", *from, err)
	}
	size := ""
	if fi, err := os.Stat(file); err == nil && fi.Mode().IsRegular() {
		size = ", " + image.Human(fi.Size())
	}
	fmt.Fprintf(stdout, "Template %s written (%s%s, %.1fs) from %s; use it with: %s init NAME --template %s\n",
		file, f.Name, size, time.Since(start).Seconds(), src, k.Program, file)
	return nil
}

// resolveTemplateSource says what SOURCE is. A path that exists is a
// directory, an image or a tarball; otherwise it is a container name. The
// returned release ends what keeps the source consistent while it is read
// (the lock on a container's layer image).
func resolveTemplateSource(from, lxcpath string) (template.Source, func(), error) {
	nop := func() {}
	if fi, err := os.Stat(from); err == nil {
		abs, err := filepath.Abs(from)
		if err != nil {
			return template.Source{}, nop, err
		}
		if fi.IsDir() {
			return template.Source{Dir: abs}, nop, nil
		}
		if fi.Mode().IsRegular() {
			l, err := layer.ResolveLower(abs)
			if err == nil {
				return template.Source{Image: &l}, nop, nil
			}
			if errors.Is(err, trust.ErrUntrusted) {
				// An image mounted by host root must be root's alone: one
				// its user can replace could be crafted to attack the
				// kernel's filesystem code.
				return template.Source{}, nop, err
			}
			if template.IsTarballName(abs) {
				return template.Source{Tarball: abs}, nop, nil
			}
		}
		return template.Source{}, nop, fmt.Errorf("source %q is neither a directory, a tarball (.tar, .tar.gz, .tar.xz, .tar.zst) nor a squashfs, erofs or ext4 image", from)
	}
	if strings.ContainsRune(from, '/') || from == "." || from == ".." {
		return template.Source{}, nop, fmt.Errorf("source %q does not exist", from)
	}
	if lxcpath == "" {
		lxcpath = defaultLXCPath()
	}
	cfg := filepath.Join(lxcpath, from, "config")
	if _, err := os.Stat(cfg); err != nil {
		return template.Source{}, nop, fmt.Errorf("source %q is neither a file or directory nor a container under %s (no %s)", from, lxcpath, cfg)
	}
	// An unprivileged container's files on disk carry the host IDs of its
	// lxc.idmap (its root's are 100000); a template holds the IDs the
	// container saw (0), which the next containers' idmapped mounts shift
	// again. The build shifts them back through the mapping.
	var m *idmap.Mapping
	var rootfsOptions []string
	if f, err := os.Open(cfg); err == nil {
		v := hook.ConfigValues(f, idmap.ConfigKey, "lxc.rootfs.options")
		f.Close()
		if m, err = idmap.ParseLXC(v[idmap.ConfigKey]); err != nil {
			return template.Source{}, nop, fmt.Errorf("container %q (%s): %w", from, cfg, err)
		}
		rootfsOptions = v["lxc.rootfs.options"]
	}
	if state := lxcState(from, lxcpath); state != "STOPPED" {
		return template.Source{}, nop, fmt.Errorf("container %q is %s: its files change while they are read, so it is refused; stop it first (lxc-stop -n %s)", from, state, from)
	}
	c, err := loadContainer(lxcpath, from)
	if err != nil {
		// Not one of ours: LXC's own rootfs, which must be a directory.
		src, release, err := lxcDirSource(from, cfg)
		// With lxc.rootfs.options idmap=container LXC idmaps the rootfs
		// itself: it is stored with the container's IDs already.
		if err == nil && m != nil && !strings.Contains(hook.Last(rootfsOptions), "idmap=") {
			src.Shift = m
		}
		return src, release, err
	}
	src, release, err := unionSource(c)
	if err == nil && src.Union != nil {
		src.Union.IDMap = m
	}
	return src, release, err
}

func lxcState(name, lxcpath string) string {
	out, err := execs.Run(10*time.Second, "install lxc", "lxc-info", "-n", name, "-P", lxcpath, "-sH")
	if err != nil {
		return "in an unknown state (lxc-info: " + err.Error() + ")"
	}
	return strings.TrimSpace(out)
}

// lxcDirSource is the rootfs of a container LXC mounts itself.
func lxcDirSource(name, cfg string) (template.Source, func(), error) {
	nop := func() {}
	f, err := os.Open(cfg)
	if err != nil {
		return template.Source{}, nop, err
	}
	rootfs := hook.Last(hook.ConfigValues(f, "lxc.rootfs.path")["lxc.rootfs.path"])
	f.Close()
	if rootfs == "" {
		return template.Source{}, nop, fmt.Errorf("container %q (%s) has no lxc.rootfs.path", name, cfg)
	}
	path := strings.TrimPrefix(rootfs, "dir:")
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() || !filepath.IsAbs(path) {
		return template.Source{}, nop, fmt.Errorf("container %q: lxc.rootfs.path %q is not a directory; only dir rootfs containers (and these hooks' containers) can be a template source", name, rootfs)
	}
	return template.Source{Dir: path}, nop, nil
}

// unionSource is a hook-managed container's layers. The layer image is
// locked as the hook locks it, so the container cannot start while its
// layer is read (its start is refused, naming the lock).
func unionSource(c *container) (template.Source, func(), error) {
	nop := func() {}
	u := &template.Union{Container: c.Name}
	for _, p := range c.Hook.Lowers {
		l, err := layer.ResolveLower(p)
		if err != nil {
			return template.Source{}, nop, fmt.Errorf("container %q: %w", c.Name, err)
		}
		u.Lowers = append(u.Lowers, l)
	}
	if len(u.Lowers) == 0 {
		return template.Source{}, nop, fmt.Errorf("container %q (%s) names no template", c.Name, c.Config)
	}
	release := nop
	switch {
	case c.Hook.Image != "":
		f, err := image.Open(c.Hook.Image, os.O_RDONLY)
		if errors.Is(err, os.ErrNotExist) {
			break // never started: no layer yet
		}
		if err != nil {
			return template.Source{}, nop, fmt.Errorf("container %q: layer image: %w", c.Name, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return template.Source{}, nop, fmt.Errorf("container %q: its layer image %s is in use (locked by a hook: the container is starting or still holds it; see %s status %s)", c.Name, c.Hook.Image, c.Hook.Program, c.Name)
		}
		// Read-only with noload, a journal that still needs recovery would
		// be ignored and the layer read half-written: refuse, saying how to
		// repair it (as the hook would at the next start).
		if sb, err := image.ReadSuperblock(f); err != nil {
			f.Close()
			return template.Source{}, nop, fmt.Errorf("container %q: layer image %s: %w", c.Name, c.Hook.Image, err)
		} else if why := sb.NeedsCheck(time.Time{}); why != "" && !strings.HasPrefix(why, "it was mounted") {
			f.Close()
			return template.Source{}, nop, fmt.Errorf("container %q: its layer image %s needs e2fsck: %s; run e2fsck -p %s (or start and stop the container once) first", c.Name, c.Hook.Image, why, c.Hook.Image)
		}
		u.LayerImage = c.Hook.Image
		release = func() { f.Close() }
	case c.Hook.Upper != "":
		d, err := trust.OpenDir(c.Hook.Upper, "--upper")
		if errors.Is(err, os.ErrNotExist) {
			break // never started: no layer yet
		}
		if err != nil {
			return template.Source{}, nop, fmt.Errorf("container %q: %w", c.Name, err)
		}
		defer d.Close()
		if m, err := d.ReadFile(layer.MarkerName); err == nil && strings.TrimSpace(string(m)) == layer.Aufs {
			return template.Source{}, nop, fmt.Errorf("container %q: its layer %s was written by aufs, whose whiteouts overlayfs cannot read; flatten it where AuFS runs", c.Name, c.Hook.Upper)
		}
		if st, err := d.Lstat("upper"); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			u.UpperDir = filepath.Join(c.Hook.Upper, "upper")
		}
	}
	return template.Source{Union: u}, release, nil
}

// warnSlowTemplate prints a warning when the template image's compression
// is slow to boot, with the command that converts it.
func warnSlowTemplate(k Kind, l layer.Lower, w io.Writer) {
	if !l.IsImage() {
		return
	}
	f, err := l.Open()
	if err != nil {
		return
	}
	defer f.Close()
	comp, err := template.Compression(f, l.FSType)
	if err != nil || !template.SlowCompression(comp) {
		return
	}
	to, format := template.Conversion(l.Path, l.FSType)
	fmt.Fprintf(w, "%s init: warning: template %s is %s compressed with %s, which is slow to boot (every cold read decompresses); convert it once with: %s template %s --from %s --format %s\n",
		k.Program, l.Path, l.FSType, comp, k.Program, hook.Quote(to), hook.Quote(l.Path), format)
}
