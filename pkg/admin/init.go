package admin

import (
	"bufio"
	"errors"
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
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
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
		synopsis += " [--size SIZE]"
	}
	if k.Program == "lxc-hook-aufs" {
		synopsis += " [--fallback=overlay]"
	} else {
		synopsis += " [--ephemeral]"
	}
	fs := flags(k, "init", synopsis, initAbout, stdout)
	tpl := fs.String("template", "", "read-only template `FILE` (or directory)")
	lxcpath := fs.String("P", "", "`LXCPATH` to create the container in (default: LXC's lxc.lxcpath)")
	fs.StringVar(lxcpath, "lxcpath", "", "same as -P")
	size := ""
	if k.Image {
		fs.StringVar(&size, "size", "", "`SIZE` of the container's disk cap, with K, M, G or T (default 2G)")
	}
	// Each binary's --help documents only the flags it takes: AuFS has no
	// ephemeral mode, and lxc-hook-aufs alone has --fallback.
	ephemeral, fallback := new(bool), new(string)
	if k.Program != "lxc-hook-aufs" {
		fs.BoolVar(ephemeral, "ephemeral", false, "a throw-away container: a new empty layer at every start, gone at stop (--size caps it; for lxc-hook-overlay a tmpfs, in RAM)")
	} else {
		fs.StringVar(fallback, "fallback", "", "`FS` the hook lines mount the layer with where the kernel has no AuFS: overlay (written onto the lines as --fallback=overlay). Without it, init on a kernel without AuFS is refused")
	}
	if !k.Image && k.Program == "lxc-hook-overlay" {
		fs.StringVar(&size, "size", "", "`SIZE` cap of the --ephemeral tmpfs layer (default: half of RAM, tmpfs's own)")
	}
	unpriv := fs.Bool("unprivileged", false, "an unprivileged container: lxc.idmap from root's range in /etc/subuid and /etc/subgid (given one no other user's overlaps where root has none), and the hook on lxc.hook.pre-start instead of lxc.hook.pre-mount")
	isolated := fs.Bool("isolated", false, "an unprivileged container with a block of 65536 IDs of its own in root's range (implies --unprivileged): its root cannot touch other containers' files")
	defaults := fs.String("default-config", "/etc/lxc/default.conf", "the host's LXC default config `FILE` to copy (networking)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("give exactly one container NAME (see --help)")}
	}
	name := pos[0]
	if name == "" || strings.ContainsAny(name, "/\n\r") || name == "." || name == ".." {
		return usageError{fmt.Errorf("container name %q is not valid", name)}
	}
	if *tpl == "" {
		return usageError{errors.New("--template FILE is required")}
	}
	// A config line ends at a newline; LXC has no way to quote one.
	if strings.ContainsAny(*tpl, "\n\r") {
		return usageError{fmt.Errorf("--template %q: a path with a newline cannot be written to an LXC config", *tpl)}
	}
	if strings.ContainsAny(*lxcpath, "\n\r") {
		return usageError{fmt.Errorf("-P %q: a path with a newline cannot be written to an LXC config", *lxcpath)}
	}
	if !filepath.IsAbs(*tpl) {
		abs, err := filepath.Abs(*tpl)
		if err != nil {
			return err
		}
		*tpl = abs
	}
	// First: a binary LXC must not run as root makes everything else moot.
	self, err := hookExecutable(k.Program)
	if err != nil {
		return err
	}
	lower, err := layer.ResolveLower(*tpl)
	if err != nil {
		return err
	}
	if *fallback != "" && *fallback != "overlay" {
		return usageError{fmt.Errorf("--fallback %q: the only fallback is overlay", *fallback)}
	}
	// A container whose every start would fail is no container: on a
	// kernel without AuFS (every mainline kernel) refuse now, as the hook
	// would at each start, unless the lines are to fall back to overlayfs.
	aufsFallback := false
	if k.Program == "lxc-hook-aufs" && !hasAufs() {
		if *fallback == "" {
			return errors.New("this kernel has no AuFS (not in /proc/filesystems, and no module loads), so every start of this container would be refused: use lxc-hook-overlay init (or lxc-hook-loopimg init), or add --fallback=overlay to write hook lines that mount the layer with overlayfs here; nothing was written")
		}
		aufsFallback = true
	}
	if !k.Image && size != "" {
		if !*ephemeral {
			return usageError{errors.New("--size caps only an --ephemeral layer with lxc-hook-overlay (a directory layer has no cap)")}
		}
		if _, err := image.ParseSize(size); err != nil {
			return err
		}
	}
	warnSlowTemplate(k, lower, stderr)
	if k.Image {
		if size == "" {
			size = "2G"
		}
		if _, err := image.ParseSize(size); err != nil {
			return err
		}
	}
	if *lxcpath == "" {
		*lxcpath = defaultLXCPath()
	}
	// Absolute: the config's paths (--config above all) are compared with
	// what LXC passes the hooks.
	if abs, err := filepath.Abs(*lxcpath); err == nil {
		*lxcpath = abs
	}
	dir := filepath.Join(*lxcpath, name)
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("container %q already exists (%s): nothing was changed", name, dir)
	}
	systemd, err := templateUsesSystemd(lower)
	if err != nil {
		return fmt.Errorf("template %q: %w", *tpl, err)
	}
	var idm *idmap.Mapping
	idNote := ""
	if *unpriv || *isolated {
		var unlock func()
		if idm, idNote, unlock, err = initMapping(*lxcpath, *isolated, stdout); err != nil {
			return err
		}
		// Held until the config is written: another init --isolated
		// must see this container's block.
		defer unlock()
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Container %s, written by %s init on %s.\n", name, k.Program, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "# The template %s stays read-only; writes go to the layer beside this file.\n\n", *tpl)
	if common := "/usr/share/lxc/config/common.conf"; exists(common) {
		fmt.Fprintf(&b, "lxc.include = %s\n", common)
	}
	var netWarnings []string
	var defaultText string
	if def, err := os.ReadFile(*defaults); err == nil {
		defaultText = string(def)
		fmt.Fprintf(&b, "\n# From %s\n", *defaults)
		sc := bufio.NewScanner(strings.NewReader(string(def)))
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				b.WriteString(l + "\n")
			}
		}
		netWarnings = missingBridges(string(def), *defaults, "/sys/class/net")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "lxc.uts.name = %s\n", name)
	writeLogLines(&b, k.Program, name, dir, defaultText)
	fmt.Fprintf(&b, "lxc.rootfs.path = dir:%s\n", filepath.Join(dir, "rootfs"))
	b.WriteString("# A writable /proc and sys_boot kept: halt and reboot from inside work.\n")
	b.WriteString("lxc.mount.auto = proc:rw sys:mixed cgroup:mixed\n")
	b.WriteString("lxc.cap.drop =\nlxc.cap.drop = mac_admin mac_override sys_time sys_module sys_rawio\n")
	if systemd {
		b.WriteString("# systemd halts on SIGRTMIN+3\nlxc.signal.halt = SIGRTMIN+3\n")
	}
	// LXC runs the line through sh -c: every word is quoted, so a path with
	// a blank or a "$(...)" is one argument and nothing runs.
	// --config: a copy of this config that got no layer (cp, or an LXC
	// without the clone hook) is refused at start, not booted empty.
	words := []string{self, "--config", filepath.Join(dir, "config"), "--lower", *tpl}
	if size != "" {
		words = append(words, "--size", size)
	}
	if *ephemeral {
		words = append(words, "--ephemeral")
	}
	if *fallback != "" {
		// Also where this kernel has AuFS: the user asked for the lines
		// to work on a kernel without it.
		words = append(words, "--fallback="+*fallback)
	}
	line := hook.JoinWords(words)
	hookTypes := HookTypes(idm != nil)
	if idm != nil {
		b.WriteString("\n# Unprivileged: the container's root is host uid/gid " + idm.String() + ";\n# its pre-mount cannot mount, so pre-start prepares the root (see " + k.Program + " --help)\n")
		if idNote != "" {
			b.WriteString("# " + idNote + "\n")
		}
		for _, l := range idm.Lines() {
			fmt.Fprintf(&b, "lxc.idmap = %s\n", l)
		}
	}
	b.WriteString("\n# The writable layer: see " + k.Program + " --help\n")
	b.WriteString("# lxc.hook.clone copies the layer when lxc-copy or lxc-snapshot copies this container;\n")
	b.WriteString("# lxc-destroy removes the layer with this directory.\n")
	for _, t := range hookTypes {
		fmt.Fprintf(&b, "lxc.hook.%s = %s\n", t, line)
	}

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
	if idm != nil {
		// LXC bind-mounts rootfs/ as the container's root, which must
		// search this directory; no other user may (the container's root
		// is mounted on rootfs/ on the host while it runs): search by the
		// group of the container's root only, no listing.
		gid, _ := idm.RootGID()
		if err := os.Chown(dir, 0, int(gid)); err != nil {
			return err
		}
		if err := os.Chmod(dir, 0o710); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(b.String()), 0o640); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Container %s written to %s; start it with: lxc-start -n %s", name, dir, hook.Quote(name))
	if *lxcpath != defaultLXCPath() {
		fmt.Fprintf(stdout, " -P %s", hook.Quote(*lxcpath))
	}
	fmt.Fprintln(stdout)
	if aufsFallback {
		fmt.Fprintf(stderr, "%s init: this kernel has no AuFS: the hook lines carry --fallback=overlay, so the layer is mounted with overlayfs (an overlayfs layer, which lxc-hook-aufs without the fallback refuses)\n", k.Program)
	}
	for _, w := range netWarnings {
		fmt.Fprintf(stderr, "%s init: warning: %s\n", k.Program, w)
	}
	return nil
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
