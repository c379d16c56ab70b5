package admin

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/layer"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/loopimg"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/progress"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

const initAbout = `Writes a complete LXC container NAME under the LXC path: its directory, an
empty rootfs directory, and a config with the hook lines over the template
FILE (a squashfs, erofs or ext4 image, or a directory): pre-mount and stop
(pre-start and stop for --unprivileged), and lxc.hook.clone, so that lxc-copy
and lxc-snapshot copy the writable layer too (--config on each line refuses
a copy made without it); the distribution's common config where LXC ships one, the host's LXC default
config (networking), a writable /proc, sys_boot kept so that halt and reboot
from inside work, SIGRTMIN+3 as the halt signal for systemd templates, and a
log file, LXCPATH/NAME/NAME.log at level WARN, where the hooks' errors land
(status NAME shows the last one). At its first start the container gets its
name as hostname and a machine-id of its own.
An existing container is never touched. Afterwards: lxc-start -n NAME.
The hook lines name this binary (its link in /usr/share/lxc/hooks where
there is one), which LXC runs as root: run init from the installed binary
(make install or the package); one that a non-root user could replace (a
build in a home directory) is refused.`

func cmdInit(k Kind, args []string, stdout, stderr io.Writer) error {
	synopsis := "NAME --template FILE [-P LXCPATH] [--unprivileged]"
	if k.Image {
		synopsis += " [--size SIZE] [--preallocate]"
	}
	if k.Program == "lxc-hook-aufs" {
		synopsis += " [--fallback=overlay]"
	} else {
		synopsis += " [--ephemeral]"
	}
	fs := flags(k, "init", synopsis, initAbout, stdout)
	var s initSpec
	s.register(k, fs, true)
	lxcpath := fs.String("P", "", "`LXCPATH` to create the container in (default: LXC's lxc.lxcpath)")
	fs.StringVar(lxcpath, "lxcpath", "", "same as -P")
	defaults := fs.String("default-config", "/etc/lxc/default.conf", "the host's LXC default config `FILE` to copy (networking)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("give exactly one container NAME (see --help)")}
	}
	name := pos[0]
	if strings.ContainsAny(*lxcpath, "\n\r") {
		return usageError{fmt.Errorf("-P %q: a path with a newline cannot be written to an LXC config", *lxcpath)}
	}
	if *lxcpath == "" {
		*lxcpath = defaultLXCPath()
	}
	// Absolute: the config's paths (--config above all) are compared with
	// what LXC passes the hooks.
	if abs, err := filepath.Abs(*lxcpath); err == nil {
		*lxcpath = abs
	}
	if err := validName(name); err != nil {
		return err
	}
	dir := filepath.Join(*lxcpath, name)
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("container %q already exists (%s): nothing was changed", name, dir)
	}
	p, err := s.plan(k, name, dir, stdout, stderr)
	if err != nil {
		return err
	}
	defer p.unlock()
	var defaultText string
	var netWarnings []string
	if def, err := os.ReadFile(*defaults); err == nil {
		defaultText = string(def)
		netWarnings = missingBridges(defaultText, *defaults, "/sys/class/net")
	}
	text := p.config(defaultText, "From "+*defaults)

	// The container's layer will live in its directory there: the LXC
	// path must pass the rule every start applies (package trust).
	lp, err := trust.MkdirAll(*lxcpath, "LXC path", 0o755)
	if err != nil {
		return err
	}
	lp.Close()
	// Mkdir, not MkdirAll: losing a race to another init must not share a directory.
	if err := os.Mkdir(dir, 0o770); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("container %q already exists (%s): nothing was changed", name, dir)
		}
		return err
	}
	written := false
	defer func() {
		if !written {
			// What this init made, one by one (never recursively: next to
			// a mountpoint that would cross into it).
			for _, f := range []string{"config", "rootfs", loopimg.DefaultImageName} {
				os.Remove(filepath.Join(dir, f))
			}
			os.Remove(dir)
		}
	}()
	if err := p.closeDir(); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(text), 0o640); err != nil {
		return err
	}
	if err := p.createImage(stdout); err != nil {
		return fmt.Errorf("%w; nothing was written", err)
	}
	written = true
	fmt.Fprintf(stdout, "Container %s written to %s; start it with: lxc-start -n %s", name, dir, hook.Quote(name))
	if *lxcpath != defaultLXCPath() {
		fmt.Fprintf(stdout, " -P %s", hook.Quote(*lxcpath))
	}
	fmt.Fprintln(stdout)
	p.warn(stderr, netWarnings)
	return nil
}

// initSpec is what init is asked to write, as its flags say; lxc-template
// and convert take the same flags and write the same container.
type initSpec struct {
	tpl, size, fallback                      string
	ephemeral, unpriv, isolated, preallocate bool
}

// register defines the flags of an initSpec on fs: each binary's --help
// documents only the flags it takes. withIDs: --unprivileged and
// --isolated too (convert keeps the container's own lxc.idmap).
func (s *initSpec) register(k Kind, fs *flag.FlagSet, withIDs bool) {
	fs.StringVar(&s.tpl, "template", "", "read-only template `FILE` (or directory)")
	if k.Image {
		fs.StringVar(&s.size, "size", "", "`SIZE` of the container's disk cap, with K, M, G or T (default 2G)")
		fs.BoolVar(&s.preallocate, "preallocate", false, "reserve the image's whole SIZE on the host (fallocate) and create the image now (its first start would otherwise, sparse); the hook lines carry --preallocate, so a resize reserves too")
	}
	// AuFS has no ephemeral mode, and lxc-hook-aufs alone has --fallback.
	if k.Program != "lxc-hook-aufs" {
		fs.BoolVar(&s.ephemeral, "ephemeral", false, "a throw-away container: a new empty layer at every start, gone at stop (--size caps it; for lxc-hook-overlay a tmpfs, in RAM)")
	} else {
		fs.StringVar(&s.fallback, "fallback", "", "`FS` the hook lines mount the layer with where the kernel has no AuFS: overlay (written onto the lines as --fallback=overlay). Without it, init on a kernel without AuFS is refused")
	}
	if !k.Image && k.Program == "lxc-hook-overlay" {
		fs.StringVar(&s.size, "size", "", "`SIZE` cap of the --ephemeral tmpfs layer (default: half of RAM, tmpfs's own)")
	}
	if !withIDs {
		return
	}
	fs.BoolVar(&s.unpriv, "unprivileged", false, "an unprivileged container: lxc.idmap from root's range in /etc/subuid and /etc/subgid (given one no other user's overlaps where root has none), and the hook on lxc.hook.pre-start instead of lxc.hook.pre-mount")
	fs.BoolVar(&s.isolated, "isolated", false, "an unprivileged container with a block of 65536 IDs of its own in root's range (implies --unprivileged): its root cannot touch other containers' files")
}

// initPlan is a checked initSpec: everything init writes, known and
// checked before anything is written.
type initPlan struct {
	k            Kind
	cmd          string // the command writing it: init, lxc-template, convert
	by           string // the same, for the config's comment
	name, dir    string
	tpl          string
	self         string // the hook binary the lines name
	size         string
	ephemeral    bool
	preallocate  bool
	fallback     string
	aufsFallback bool
	systemd      bool
	idm          *idmap.Mapping
	idNote       string
	// unlock ends what keeps another init from taking the same ID block
	// (--isolated): held until the config is written.
	unlock func()
}

// plan checks s for container name in directory dir, as every start
// will: the name, the template (and that root alone can change it), the
// hook binary LXC will run, AuFS, the size; it picks the ID mapping of an
// unprivileged container. Nothing is written.
func (s *initSpec) plan(k Kind, name, dir string, stdout, stderr io.Writer) (*initPlan, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if s.tpl == "" {
		return nil, usageError{errors.New("--template FILE is required")}
	}
	// A config line ends at a newline; LXC has no way to quote one.
	if strings.ContainsAny(s.tpl, "\n\r") {
		return nil, usageError{fmt.Errorf("--template %q: a path with a newline cannot be written to an LXC config", s.tpl)}
	}
	if strings.ContainsAny(dir, "\n\r") {
		return nil, usageError{fmt.Errorf("%q: a path with a newline cannot be written to an LXC config", dir)}
	}
	tpl, err := filepath.Abs(s.tpl)
	if err != nil {
		return nil, err
	}
	// First: a binary LXC must not run as root makes everything else moot.
	self, err := hookExecutable(k.Program)
	if err != nil {
		return nil, err
	}
	lower, err := layer.ResolveLower(tpl)
	if err != nil {
		return nil, err
	}
	p := &initPlan{k: k, cmd: "init", by: "init", name: name, dir: dir, tpl: tpl, self: self, size: s.size, ephemeral: s.ephemeral, preallocate: s.preallocate, fallback: s.fallback, unlock: func() {}}
	if s.fallback != "" && s.fallback != "overlay" {
		return nil, usageError{fmt.Errorf("--fallback %q: the only fallback is overlay", s.fallback)}
	}
	// A container whose every start would fail is no container: on a
	// kernel without AuFS (every mainline kernel) refuse now, as the hook
	// would at each start, unless the lines are to fall back to overlayfs.
	if k.Program == "lxc-hook-aufs" && !hasAufs() {
		if s.fallback == "" {
			return nil, errors.New("this kernel has no AuFS (not in /proc/filesystems, and no module loads), so every start of this container would be refused: use lxc-hook-overlay init (or lxc-hook-loopimg init), or add --fallback=overlay to write hook lines that mount the layer with overlayfs here; nothing was written")
		}
		p.aufsFallback = true
	}
	if !k.Image && p.size != "" {
		if !s.ephemeral {
			return nil, usageError{errors.New("--size caps only an --ephemeral layer with lxc-hook-overlay (a directory layer has no cap)")}
		}
		if _, err := image.ParseSize(p.size); err != nil {
			return nil, err
		}
	}
	warnSlowTemplate(k, lower, stderr)
	if k.Image {
		if p.size == "" {
			p.size = "2G"
		}
		if _, err := image.ParseSize(p.size); err != nil {
			return nil, err
		}
		if s.preallocate && s.ephemeral {
			return nil, usageError{errors.New("--preallocate and --ephemeral: an ephemeral layer is a new sparse image at every start; give one or the other")}
		}
	}
	if p.systemd, err = templateUsesSystemd(lower); err != nil {
		return nil, fmt.Errorf("template %q: %w", tpl, err)
	}
	if s.unpriv || s.isolated {
		if p.idm, p.idNote, p.unlock, err = initMapping(filepath.Dir(dir), s.isolated, stdout); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// validName refuses a container name LXC's paths cannot hold.
func validName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\n\r") || name == "." || name == ".." {
		return usageError{fmt.Errorf("container name %q is not valid", name)}
	}
	return nil
}

// config is the container's config: defaults (the host's LXC default
// config, or the lines lxc-create wrote), under the comment from, then
// everything the hooks need.
func (p *initPlan) config(defaults, from string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Container %s, written by %s %s on %s.\n", p.name, p.k.Program, p.by, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "# The template %s stays read-only; writes go to the layer beside this file.\n\n", p.tpl)
	if common := "/usr/share/lxc/config/common.conf"; exists(common) {
		fmt.Fprintf(&b, "lxc.include = %s\n", common)
	}
	if strings.TrimSpace(defaults) != "" {
		fmt.Fprintf(&b, "\n# %s\n", from)
		sc := bufio.NewScanner(strings.NewReader(defaults))
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				b.WriteString(l + "\n")
			}
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "lxc.uts.name = %s\n", p.name)
	writeLogLines(&b, p.k.Program, p.name, p.dir, defaults)
	fmt.Fprintf(&b, "lxc.rootfs.path = dir:%s\n", filepath.Join(p.dir, "rootfs"))
	b.WriteString("# A writable /proc and sys_boot kept: halt and reboot from inside work.\n")
	b.WriteString("lxc.mount.auto = proc:rw sys:mixed cgroup:mixed\n")
	b.WriteString("lxc.cap.drop =\nlxc.cap.drop = mac_admin mac_override sys_time sys_module sys_rawio\n")
	if p.systemd {
		b.WriteString("# systemd halts on SIGRTMIN+3\nlxc.signal.halt = SIGRTMIN+3\n")
	}
	if p.idm != nil {
		b.WriteString("\n# Unprivileged: the container's root is host uid/gid " + p.idm.String() + ";\n# its pre-mount cannot mount, so pre-start prepares the root (see " + p.k.Program + " --help)\n")
		if p.idNote != "" {
			b.WriteString("# " + p.idNote + "\n")
		}
		for _, l := range p.idm.Lines() {
			fmt.Fprintf(&b, "lxc.idmap = %s\n", l)
		}
	}
	p.hookLines(&b)
	return b.String()
}

// hookLines writes the hook lines: on pre-start for an unprivileged
// container (p.idm set), on pre-mount for a privileged one.
func (p *initPlan) hookLines(b *strings.Builder) {
	// LXC runs the line through sh -c: every word is quoted, so a path with
	// a blank or a "$(...)" is one argument and nothing runs.
	// --config: a copy of this config that got no layer (cp, or an LXC
	// without the clone hook) is refused at start, not booted empty.
	words := []string{p.self, "--config", filepath.Join(p.dir, "config"), "--lower", p.tpl}
	if p.size != "" {
		words = append(words, "--size", p.size)
	}
	if p.preallocate {
		words = append(words, "--preallocate")
	}
	if p.ephemeral {
		words = append(words, "--ephemeral")
	}
	if p.fallback != "" {
		// Also where this kernel has AuFS: the user asked for the lines
		// to work on a kernel without it.
		words = append(words, "--fallback="+p.fallback)
	}
	line := hook.JoinWords(words)
	b.WriteString("\n# The writable layer: see " + p.k.Program + " --help\n")
	b.WriteString("# lxc.hook.clone copies the layer when lxc-copy or lxc-snapshot copies this container;\n")
	b.WriteString("# lxc-destroy removes the layer with this directory.\n")
	for _, t := range HookTypes(p.idm != nil) {
		fmt.Fprintf(b, "lxc.hook.%s = %s\n", t, line)
	}
}

// closeDir gives an unprivileged container's directory its owner and
// mode. LXC bind-mounts rootfs/ as the container's root, which must search
// this directory; no other user may (the container's root is mounted on
// rootfs/ on the host while it runs): search by the group of the
// container's root only, no listing.
func (p *initPlan) closeDir() error {
	if p.idm == nil {
		return nil
	}
	gid, _ := p.idm.RootGID()
	if err := os.Chown(p.dir, 0, int(gid)); err != nil {
		return err
	}
	return os.Chmod(p.dir, 0o710)
}

// createImage makes the layer image now for --preallocate, with its
// progress on stdout's terminal: the space is reserved (or refused, the
// host being full) while the user watches, not at a first start.
func (p *initPlan) createImage(stdout io.Writer) error {
	if !p.preallocate || !p.k.Image {
		return nil
	}
	size, err := image.ParseSize(p.size)
	if err != nil {
		return err
	}
	return image.Create(filepath.Join(p.dir, loopimg.DefaultImageName), image.CreateOptions{Size: size, Preallocate: true, Progress: progress.New(stdout)})
}

// warn prints what the user should know about the container written.
func (p *initPlan) warn(stderr io.Writer, netWarnings []string) {
	if p.aufsFallback {
		fmt.Fprintf(stderr, "%s %s: this kernel has no AuFS: the hook lines carry --fallback=overlay, so the layer is mounted with overlayfs (an overlayfs layer, which lxc-hook-aufs without the fallback refuses)\n", p.k.Program, p.cmd)
	}
	for _, w := range netWarnings {
		fmt.Fprintf(stderr, "%s %s: warning: %s\n", p.k.Program, p.cmd, w)
	}
}

// logLevel is the level init gives a container's LXC log: it keeps the
// hooks' warnings and errors and LXC's own, and nothing on a start that
// goes well (on a host with cgroup v1, LXC 5.0.2 adds one warning per start
// about cgroup2 limits). INFO would add some 50 lines of LXC's per start and
// 40 per lxc-attach (measured with LXC 5.0.2): a log that grows by megabytes
// and buries the one line that matters.
const logLevel = "WARN"

// writeLogLines gives the container a log file where LXC's users look for
// it, $lxcpath/NAME/NAME.log: without lxc.log.file LXC 5 writes none, and
// the hooks' errors (why a start was refused, what still holds a device
// after a stop) would reach nobody. A host default config that sets either
// key keeps its own.
func writeLogLines(b *strings.Builder, program, name, dir, defaults string) {
	have := hook.ConfigValues(strings.NewReader(defaults), "lxc.log.file", "lxc.log.level")
	if len(have["lxc.log.file"]) > 0 && len(have["lxc.log.level"]) > 0 {
		return
	}
	fmt.Fprintf(b, "# LXC's log of this container, with the hooks' warnings and errors;\n# %s status %s shows the last error. LXC appends to it: rotate it with\n# logrotate (copytruncate) if it grows.\n", program, name)
	if len(have["lxc.log.file"]) == 0 {
		fmt.Fprintf(b, "lxc.log.file = %s\n", filepath.Join(dir, name+".log"))
	}
	if len(have["lxc.log.level"]) == 0 {
		fmt.Fprintf(b, "lxc.log.level = %s\n", logLevel)
	}
}

// missingBridges checks the bridges the copied network config attaches
// veth devices to: on a host where lxc-net has not run, lxcbr0 does not
// exist and the first lxc-start fails with "bridge interface doesn't
// exist". Better to say so, and how to fix it, before that.
func missingBridges(config, from, sysNet string) []string {
	v := hook.ConfigValues(strings.NewReader(config), configKeys(config, ".link", ".type")...)
	var out []string
	for key, vals := range v {
		if !strings.HasSuffix(key, ".link") {
			continue
		}
		prefix := strings.TrimSuffix(key, ".link")
		if t := hook.Last(v[prefix+".type"]); t != "veth" && t != "" {
			continue // macvlan, phys, ...: link is a host device, not a bridge
		}
		br := hook.Last(vals)
		if br == "" || exists(filepath.Join(sysNet, br)) {
			continue
		}
		fix := "start it (systemctl start lxc-net, which makes lxcbr0)"
		if br != "lxcbr0" {
			fix = "create it"
		}
		out = append(out, fmt.Sprintf("%s = %s (copied from %s): there is no network interface %s on this host, so lxc-start will fail with \"bridge interface doesn't exist\"; %s, set %s to a bridge that exists in the container's config, or run init with --default-config /dev/null for a container without network", key, br, from, br, fix, key))
	}
	sort.Strings(out)
	return out
}

// configKeys lists the keys of a config that end in one of suffixes.
func configKeys(config string, suffixes ...string) []string {
	var keys []string
	for _, line := range strings.Split(config, "\n") {
		k, _, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		for _, s := range suffixes {
			if strings.HasPrefix(k, "lxc.net.") && strings.HasSuffix(k, s) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// hasAufs reports whether the kernel can mount AuFS, as the hook checks
// it at start (fsopen loads a module where one exists); tests replace it.
var hasAufs = func() bool { return mount.HasFilesystem("aufs") }

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// templateUsesSystemd looks inside the template for systemd as init. An
// image is mounted read-only in a private mount namespace of a thread of
// this process, so nothing is visible to, or left on, the host.
func templateUsesSystemd(l layer.Lower) (bool, error) {
	if !l.IsImage() {
		return isSystemd(l.Path), nil
	}
	f, err := l.Open()
	if err != nil {
		return false, err
	}
	defer f.Close()
	dev, _, err := loop.AttachShared(f, "")
	if err != nil {
		return false, err
	}
	defer dev.Close()
	ok := false
	err = mount.InPrivateNamespace(func() error {
		mp, err := os.MkdirTemp("", "lxc-hook-init-")
		if err != nil {
			return err
		}
		defer os.Remove(mp)
		if err := mount.Block(l.FSType, dev.Path, mp, true); err != nil {
			return err
		}
		ok = isSystemd(mp)
		mount.Unmount(mp) // the namespace goes with the thread anyway
		return nil
	})
	return ok, err
}

// isSystemd reports whether the root at dir boots systemd.
func isSystemd(dir string) bool {
	for _, p := range []string{"sbin/init", "usr/sbin/init"} {
		target, err := os.Readlink(filepath.Join(dir, p))
		if err == nil && strings.Contains(target, "systemd") {
			return true
		}
	}
	return false
}

// HookTypes are the LXC hook keys a container's line goes on: one hook
// process per start (pre-mount; pre-start for an unprivileged container,
// whose pre-mount runs as its root and can mount nothing) and one per stop,
// and the clone hook that copies the layer with lxc-copy and lxc-snapshot.
func HookTypes(unprivileged bool) []string {
	if unprivileged {
		return []string{"pre-start", "stop", "clone"}
	}
	return []string{"pre-mount", "stop", "clone"}
}
