package template

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/execs"
	"github.com/lxc-hooks/lxc-hooks/pkg/identity"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/killpoint"
	"github.com/lxc-hooks/lxc-hooks/pkg/layer"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/progress"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// buildTimeout bounds each tool run: a template of many GiB on a slow disk
// takes minutes, never hours.
const buildTimeout = 3 * time.Hour

// Source is what a template is built from. Exactly one of Dir, Tarball,
// Image or Union is set.
type Source struct {
	// Dir is a root directory, used as it is (or shifted, with Shift).
	Dir string
	// Shift is the lxc.idmap of the unprivileged container whose root Dir
	// is: its files carry the host IDs of that mapping, and the template
	// gets the IDs the container saw (an idmapped mount of Dir through the
	// inverse mapping, nothing chowned). nil: the IDs are kept.
	Shift *idmap.Mapping
	// Tarball is a rootfs tarball (.tar, or compressed: tar recognises the
	// compression by content).
	Tarball string
	// Image is an existing template image (squashfs, erofs, ext4), mounted
	// read-only.
	Image *layer.Lower
	// Union is a hook-managed container's layers, flattened.
	Union *Union
}

// Union is a writable layer over read-only lowers, as the hooks stack them.
type Union struct {
	// Container names it in messages.
	Container string
	// Lowers, topmost first: directories or images.
	Lowers []layer.Lower
	// UpperDir is a directory layer's upper/ (lxc-hook-overlay), or "".
	UpperDir string
	// LayerImage is the ext4 image whose upper/ is the layer
	// (lxc-hook-loopimg), or "".
	LayerImage string
	// IDMap is the container's lxc.idmap (nil: privileged). What decides
	// the layer's IDs is its own ownership record (idmap.RecordName): a
	// layer written under a mapping stores that mapping's host IDs and is
	// shifted back to the container's IDs; one without a record holds the
	// container's IDs already. A record that contradicts IDMap is refused,
	// as the container's start would be.
	IDMap *idmap.Mapping
}

func (s Source) String() string {
	switch {
	case s.Dir != "":
		return s.Dir
	case s.Tarball != "":
		return s.Tarball
	case s.Image != nil:
		return s.Image.Path
	case s.Union != nil:
		return "container " + s.Union.Container + " (its template and layer)"
	}
	return "(none)"
}

// Build writes a template in format f at file from src, showing its
// progress on m (nil: none). An existing file
// is never replaced: the template is written under a temporary name in
// file's directory and renamed with RENAME_NOREPLACE. Images and union
// layers are mounted read-only in a private mount namespace of one thread
// of this process (the tools it runs inherit it), so nothing is visible on
// the host and everything goes, loop devices included, when Build returns.
func Build(src Source, file string, f Format, m *progress.Meter) error {
	file, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(file); err == nil {
		return fmt.Errorf("%s already exists: nothing was changed (a template is never overwritten; choose another name)", file)
	}
	dir, base := filepath.Split(file)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("directory %s for %s does not exist", dir, base)
	}
	if err := checkTools(src, f); err != nil {
		return err
	}
	tmp, err := makeTemp(dir, base, f)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			removeTemp(tmp, f)
		}
	}()
	// Ctrl-C (SIGINT to the terminal's process group: the tool running
	// gets it too), SIGTERM or a hangup would end this process where it
	// stands and leave the hidden temporary file and staging copy, as
	// large as the template, beside FILE. Caught, the build fails and
	// removes them; a second signal while removing is caught as well.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	interrupted := func() error {
		select {
		case s := <-sigs:
			return fmt.Errorf("interrupted (%v): the partial template was removed, nothing was written at %s", s, file)
		default:
			return nil
		}
	}
	killpoint.At("template:after-temp") // test-only

	// In a private mount namespace for every source: the machine-id files
	// are hidden there (see identity_linux.go), and images (and the
	// idmapped view of an unprivileged container's layer) are mounted.
	err = mount.InPrivateNamespace(func() error {
		switch {
		case src.Dir != "" && src.Shift == nil:
			return buildFromOrCopy(src.Dir, dir, base, tmp, f, m)
		case src.Tarball != "":
			return buildFromTarball(src.Tarball, dir, base, tmp, f, m)
		}
		root, cleanup, err := mountSource(src, dir, base)
		if err != nil {
			return err
		}
		defer cleanup()
		return buildFromOrCopy(root, dir, base, tmp, f, m)
	})
	if ierr := interrupted(); ierr != nil {
		return ierr
	}
	if err != nil {
		return err
	}
	if f.FS != "dir" {
		// Minutes for a large template on a slow disk: a step of its own.
		m.Step("writing it to disk (sync)")
		err := syncFile(tmp)
		m.End(err)
		if err != nil {
			return err
		}
	}
	if err := interrupted(); err != nil { // during the sync
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, file, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s appeared while the template was built: nothing was changed", file)
		}
		return fmt.Errorf("rename %s to %s: %w", tmp, file, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func checkTools(src Source, f Format) error {
	need := map[string]string{}
	switch f.FS {
	case "squashfs":
		need["mksquashfs"] = "install squashfs-tools"
	case "erofs":
		need["mkfs.erofs"] = "install erofs-utils"
	case "dir":
		need["cp"] = "install coreutils"
	}
	if src.Tarball != "" {
		need["tar"] = "install tar"
		switch {
		case strings.HasSuffix(src.Tarball, "zst"), strings.HasSuffix(src.Tarball, "zstd"):
			need["zstd"] = "install zstd"
		case strings.HasSuffix(src.Tarball, "xz"):
			need["xz"] = "install xz-utils"
		}
	}
	for tool, hint := range need {
		if !haveTool(tool) {
			return fmt.Errorf("%s not found: %s", tool, hint)
		}
	}
	return nil
}

func haveTool(tool string) bool {
	for _, d := range execs.Dirs {
		if fi, err := os.Stat(filepath.Join(d, tool)); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// makeTemp creates the temporary output (a file, or a directory for the
// dir format) next to the final name, so the rename stays on one
// filesystem.
func makeTemp(dir, base string, f Format) (string, error) {
	pattern := "." + base + ".tmp-"
	if f.FS == "dir" {
		d, err := os.MkdirTemp(dir, pattern)
		if err != nil {
			return "", err
		}
		// The root of a container is 0755; cp -a and tar then set the
		// source's own mode, owner and times on it.
		return d, os.Chmod(d, 0o755)
	}
	t, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	t.Close()
	return t.Name(), os.Chmod(t.Name(), 0o644)
}

// removeTemp removes a failed build's output. It was made by this process
// and is never a mountpoint, so a dir template may be removed recursively.
func removeTemp(tmp string, f Format) {
	if f.FS == "dir" {
		_ = os.RemoveAll(tmp)
		return
	}
	_ = os.Remove(tmp)
}

func syncFile(p string) error {
	fh, err := os.Open(p)
	if err != nil {
		return err
	}
	defer fh.Close()
	return fh.Sync()
}

// buildFrom writes the template of root at out, showing the tool's
// progress on m (nil: the tool is run as quiet as it gets).
func buildFrom(root, out string, f Format, m *progress.Meter) error {
	var tool string
	var args []string
	o := execs.Options{Timeout: buildTimeout}
	step := "writing the template (" + f.Name + ")"
	// first shows the total from the start (a quick tool may end before
	// it reports anything).
	first := func() {}
	switch f.FS {
	case "squashfs":
		// Not -all-root: ownership stays numeric as in the source.
		// Hardlinks, holes (sparse files) and exports are mksquashfs's
		// defaults; -noappend because out is the empty file made above.
		tool = "mksquashfs"
		args = []string{root, out, "-noappend", "-quiet", "-xattrs", "-comp", f.Comp}
		if m == nil {
			args = append(args, "-no-progress")
		} else {
			// Its bar, on a terminal of its own: in a pipe mksquashfs
			// holds it back for seconds at a time.
			o.Terminal, o.Output = true, progress.Squashfs(m)
		}
	case "erofs":
		// --chunksize keeps holes as holes (mkfs.erofs 1.5 stores the zeros
		// of sparse files otherwise); 4096 is the block size, so every
		// hole of a block or more stays out of the image.
		tool = "mkfs.erofs"
		args = []string{"--chunksize=4096"}
		if m == nil {
			args = append(args, "--quiet")
		} else {
			// A "Processing PATH" line per entry, counted against the
			// entries under root.
			entries, _ := countTree(root)
			o.Output = progress.Erofs(m, entries)
			first = func() { m.Count(0, entries, "files") }
		}
		if f.Comp != "" {
			args = append(args, "-z"+f.Comp)
		}
		args = append(args, out, root)
	case "dir":
		// cp -a keeps owners, modes, times, xattrs, hardlinks, devices and
		// fifos; --sparse=always keeps holes.
		tool = "cp"
		args = []string{"-a", "--sparse=always", "--no-target-directory", root + "/.", out}
		step = "copying the files"
		if m != nil {
			// cp says nothing of its progress: the bytes it has read, of
			// the bytes of the files under root.
			_, total := countTree(root)
			o.ReadBytes = func(n int64) { m.Bytes(min(n, total), total) }
			first = func() { m.Bytes(0, total) }
		}
	default:
		return fmt.Errorf("format %q has no builder", f.Name)
	}
	m.Step(step)
	first()
	text, err := execs.RunWith(o, tool, args...)
	m.End(err)
	if err != nil {
		// Without the progress lines (mkfs.erofs's, in a pipe).
		return fmt.Errorf("%w: %s", err, lastLines(execs.Shown(text), 3))
	}
	return nil
}

// countTree counts the entries under root (not root itself: mkfs.erofs
// names each of those) and the bytes of its regular files, without
// following links. Unreadable parts are left out: the figures only size a
// progress line.
func countTree(root string) (entries, bytes int64) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		entries++
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				bytes += fi.Size()
			}
		}
		return nil
	})
	return entries, bytes
}

// buildFromTarball extracts the tarball into a staging directory next to
// the template (or directly into the template for the dir format) and
// builds from it. tar runs as root with --numeric-owner, --xattrs and
// --xattrs-include='*' (security.capability and trusted.* included),
// --same-permissions and --sparse handling is automatic on extraction.
func buildFromTarball(tarball, dir, base, tmp string, f Format, m *progress.Meter) error {
	extract := func(into string) error {
		args := []string{"--extract", "--directory", into,
			"--numeric-owner", "--same-owner", "--same-permissions", "--xattrs", "--xattrs-include=*", "--acls"}
		o := execs.Options{Timeout: buildTimeout, Hint: "install tar"}
		stdin, err := tarballInput(tarball, m)
		if err != nil {
			return err
		}
		if stdin != nil {
			// Fed through this process, which counts what tar has read.
			defer stdin.Close()
			o.Stdin = stdin
			args = append(args, "--file", "-")
			args = append(args, stdin.compression...)
		} else {
			args = append(args, "--file", tarball)
		}
		m.Step("extracting " + filepath.Base(tarball))
		out, err := execs.RunWith(o, "tar", args...)
		m.End(err)
		if err != nil {
			return fmt.Errorf("extracting %s: %w: %s", tarball, err, lastLines(out, 3))
		}
		return nil
	}
	if f.FS == "dir" {
		if err := extract(tmp); err != nil {
			return err
		}
		// tmp is the template itself, this build's own: emptied in place.
		_, err := identity.EmptyMachineIDs(tmp)
		return err
	}
	staging, err := os.MkdirTemp(dir, "."+base+".staging-")
	if err != nil {
		return err
	}
	// Made by this process, never mounted on: removed recursively.
	defer os.RemoveAll(staging)
	if err := os.Chmod(staging, 0o755); err != nil {
		return err
	}
	if err := extract(staging); err != nil {
		return err
	}
	// The staging copy is this build's own: emptied in place (a mount on
	// it would keep RemoveAll from removing it).
	if _, err := identity.EmptyMachineIDs(staging); err != nil {
		return err
	}
	return buildFrom(staging, tmp, f, m)
}

// buildFromOrCopy builds from root; where mkfs.erofs fails on root's
// xattrs it builds from a copy instead. mkfs.erofs 1.5 gives up on the
// first llistxattr that answers EOPNOTSUPP ("failed to build shared
// xattrs: Operation not supported"), which a squashfs without an xattr
// table answers for every symlink, also through an overlayfs union (a
// Debian root's /bin -> usr/bin); cp -a treats that as "no xattrs".
func buildFromOrCopy(root, dir, base, tmp string, f Format, m *progress.Meter) error {
	cleanup, err := hideMachineIDs(root, dir, base)
	defer cleanup()
	if err != nil {
		return err
	}
	err = buildFrom(root, tmp, f, m)
	if err != nil && f.FS == "erofs" && strings.Contains(err.Error(), "xattr") {
		return buildViaCopy(root, dir, base, tmp, f, m)
	}
	return err
}

// buildViaCopy copies root (cp -a: owners, modes, xattrs, hardlinks,
// devices, holes) into a staging directory beside the template and builds
// from that.
func buildViaCopy(root, dir, base, tmp string, f Format, m *progress.Meter) error {
	staging, err := os.MkdirTemp(dir, "."+base+".staging-")
	if err != nil {
		return err
	}
	// Made by this process, never mounted on: removed recursively.
	defer os.RemoveAll(staging)
	if err := buildFrom(root, staging, Format{Name: "dir", FS: "dir"}, m); err != nil {
		return err
	}
	if err := os.Truncate(tmp, 0); err != nil {
		return err
	}
	return buildFrom(staging, tmp, f, m)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// mountSource mounts src read-only under a directory next to the template
// and returns the root to build from; cleanup unmounts, deepest first, and
// removes the mountpoints (os.Remove only: never recursively next to a
// mount).
func mountSource(src Source, dir, base string) (string, func(), error) {
	top, err := os.MkdirTemp(dir, "."+base+".mnt-")
	if err != nil {
		return "", func() {}, err
	}
	var mounted, made []string
	var devs []*loop.Device
	made = append(made, top)
	cleanup := func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			_ = mount.Unmount(mounted[i])
		}
		for i := len(made) - 1; i >= 0; i-- {
			_ = os.Remove(made[i])
		}
		waitDetached(devs)
	}
	mkdir := func(name string) (string, error) {
		p := filepath.Join(top, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			return "", err
		}
		made = append(made, p)
		return p, nil
	}
	image := func(name, path, fstype string, extra ...mount.Param) (string, error) {
		mp, err := mkdir(name)
		if err != nil {
			return "", err
		}
		dev, err := mountImage(path, fstype, mp, extra...)
		if dev != nil {
			devs = append(devs, dev)
		}
		if err != nil {
			return "", err
		}
		mounted = append(mounted, mp)
		return mp, nil
	}
	fail := func(err error) (string, func(), error) {
		cleanup()
		return "", func() {}, err
	}

	// shifted attaches a read-only idmapped clone of path at a new
	// mountpoint: files stored with the host IDs of m show with the IDs
	// the container saw. Hardlinks, modes (setuid), xattrs and ACLs stay
	// as they are on disk; the kernel translates owners, ACL entries and
	// the root ID of v3 file capabilities on the way out.
	shifted := func(name, path string, m *idmap.Mapping) (string, error) {
		mp, err := mkdir(name)
		if err != nil {
			return "", err
		}
		ns, err := idmap.UserNS(m.Inverse())
		if err != nil {
			return "", err
		}
		defer ns.Close()
		fd, err := idmap.Clone(path, ns)
		if err != nil {
			return "", fmt.Errorf("shifting %s back through lxc.idmap %s: %w", path, m, err)
		}
		defer unix.Close(fd)
		ro := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &ro); err != nil {
			return "", fmt.Errorf("read-only clone of %s: %w", path, err)
		}
		if err := idmap.Attach(fd, mp); err != nil {
			return "", err
		}
		mounted = append(mounted, mp)
		return mp, nil
	}
	// layerShift is the mapping the writable layer at root was written
	// under (its record), nil for none.
	layerShift := func(root string) (*idmap.Mapping, error) {
		rec, err := idmap.ReadRecord(root)
		if err != nil {
			return nil, fmt.Errorf("container %s: layer %s: %w", src.Union.Container, root, err)
		}
		if rec != nil && src.Union.IDMap != nil && rec.String() != src.Union.IDMap.String() {
			return nil, fmt.Errorf("container %s: its layer %s was written under lxc.idmap %s, and its config now maps %s: the container would not start either; set its lxc.idmap back", src.Union.Container, root, rec, src.Union.IDMap)
		}
		return rec, nil
	}

	if src.Dir != "" {
		root, err := shifted("shifted", src.Dir, src.Shift)
		if err != nil {
			return fail(err)
		}
		return root, cleanup, nil
	}
	if src.Image != nil {
		var extra []mount.Param
		if src.Image.FSType == "ext4" {
			// A read-only device cannot replay a journal.
			extra = append(extra, mount.Param{Key: "noload", Flag: true})
		}
		root, err := image("image", src.Image.Path, src.Image.FSType, extra...)
		if err != nil {
			return fail(err)
		}
		return root, cleanup, nil
	}
	u := src.Union
	var lowers []string
	switch {
	case u.LayerImage != "":
		// noload: a read-only mount must not replay the journal (the image
		// is left exactly as the container's last stop left it).
		mp, err := image("layer", u.LayerImage, "ext4", mount.Param{Key: "noload", Flag: true})
		if err != nil {
			return fail(err)
		}
		upper := filepath.Join(mp, "upper")
		m, err := layerShift(mp)
		if err == nil && m != nil {
			upper, err = shifted("layer-shifted", upper, m)
		}
		if err != nil {
			return fail(err)
		}
		lowers = append(lowers, upper)
	case u.UpperDir != "":
		upper := u.UpperDir
		m, err := layerShift(filepath.Dir(u.UpperDir))
		if err == nil && m != nil {
			upper, err = shifted("layer-shifted", upper, m)
		}
		if err != nil {
			return fail(err)
		}
		lowers = append(lowers, upper)
	}
	for i, l := range u.Lowers {
		if !l.IsImage() {
			lowers = append(lowers, l.Path)
			continue
		}
		mp, err := image(fmt.Sprintf("lower%d", i), l.Path, l.FSType)
		if err != nil {
			return fail(err)
		}
		lowers = append(lowers, mp)
	}
	if len(lowers) == 1 {
		return lowers[0], cleanup, nil
	}
	merged, err := mkdir("merged")
	if err != nil {
		return fail(err)
	}
	// The layer's upper becomes the top lower of a read-only overlay: its
	// whiteouts hide deleted files and its opaque directories hide the
	// lowers' contents, exactly as in the container, and overlayfs keeps
	// its own trusted.overlay.* xattrs out of listxattr.
	if err := mount.MountOverlayReadOnly("lxc-hook-template", lowers, merged); err != nil {
		return fail(err)
	}
	mounted = append(mounted, merged)
	return merged, cleanup, nil
}

// mountImage mounts the image file at path read-only at mp through a
// read-only autoclear loop device of its own (not the hooks' shared one:
// this mount lives only as long as the build).
// It returns the device (closed) once attached, also when the mount fails.
func mountImage(path, fstype, mp string, extra ...mount.Param) (*loop.Device, error) {
	// Host root mounts it: only a file root alone can change (package
	// trust), opened once by name and attached through that fd.
	fh, st, err := trust.Open(path, "source image")
	if err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		fh.Close()
		return nil, fmt.Errorf("source image %s is not a regular file", path)
	}
	dev, err := loop.Attach(fh, loop.Options{ReadOnly: true, Autoclear: true})
	fh.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: attaching a loop device: %w", path, err)
	}
	// With autoclear, this fd keeps the device until mount(2) returned.
	defer dev.Close()
	if err := mount.Block(fstype, dev.Path, mp, true, extra...); err != nil {
		return dev, fmt.Errorf("%s: %w", path, err)
	}
	return dev, nil
}

// waitDetached waits, bounded, until the autoclear devices the build
// attached are gone after their last unmount (the kernel may release them
// a moment later), so none is left when the command returns. A device is
// identified by number and disk sequence number: the same number bound
// again, by anyone, has a new diskseq and is not ours.
func waitDetached(devs []*loop.Device) {
	deadline := time.Now().Add(5 * time.Second)
	for _, d := range devs {
		for {
			st, err := loop.StatusOf(d.Number)
			if (err != nil && loop.IsUnbound(err)) || (err == nil && st.Diskseq != d.Diskseq) || time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}
