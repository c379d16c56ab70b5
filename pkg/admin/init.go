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
empty rootfs directory, and a config with the three hook lines over the
template FILE (and lxc.hook.clone, so that lxc-copy and lxc-snapshot copy the
writable layer too; --config on each line refuses a copy made without it) (a squashfs, erofs or ext4 image, or a directory), the
distribution's common config where LXC ships one, the host's LXC default
config (networking), a writable /proc, sys_boot kept so that halt and reboot
from inside work, and SIGRTMIN+3 as the halt signal for systemd templates.
An existing container is never touched. Afterwards: lxc-start -n NAME.`

func cmdInit(k Kind, args []string, stdout io.Writer) error {
	synopsis := "NAME --template FILE [-P LXCPATH] [--unprivileged]"
	if k.Image {
		synopsis += " [--size SIZE]"
	}
	fs := flags(k, "init", synopsis, initAbout, stdout)
	tpl := fs.String("template", "", "read-only template `FILE` (or directory)")
	lxcpath := fs.String("P", "", "`LXCPATH` to create the container in (default: LXC's lxc.lxcpath)")
	fs.StringVar(lxcpath, "lxcpath", "", "same as -P")
	size := ""
	if k.Image {
		fs.StringVar(&size, "size", "", "`SIZE` of the container's disk cap, with K, M, G or T (default 2G)")
	}
	ephemeral := fs.Bool("ephemeral", false, "a throw-away container: a new empty layer at every start, gone at stop (--size caps it; for lxc-hook-overlay a tmpfs, in RAM)")
	if !k.Image && k.Program == "lxc-hook-overlay" {
		fs.StringVar(&size, "size", "", "`SIZE` cap of the --ephemeral tmpfs layer (default: half of RAM, tmpfs's own)")
	}
	unpriv := fs.Bool("unprivileged", false, "an unprivileged container: lxc.idmap from root's ranges in /etc/subuid and /etc/subgid, and the hook on lxc.hook.pre-start too")
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
	lower, err := layer.ResolveLower(*tpl)
	if err != nil {
		return err
	}
	if *ephemeral && k.Program == "lxc-hook-aufs" {
		return usageError{errors.New("--ephemeral: use lxc-hook-overlay or lxc-hook-loopimg")}
	}
	if !k.Image && size != "" {
		if !*ephemeral {
			return usageError{errors.New("--size caps only an --ephemeral layer with lxc-hook-overlay (a directory layer has no cap)")}
		}
		if _, err := image.ParseSize(size); err != nil {
			return err
		}
	}
	warnSlowTemplate(k, lower, os.Stderr)
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
	self, err := hookExecutable(k.Program)
	if err != nil {
		return err
	}
	var idm *idmap.Mapping
	if *unpriv {
		if idm, err = idmap.RootMapping("/etc/subuid", "/etc/subgid"); err != nil {
			return err
		}
	}
	systemd, err := templateUsesSystemd(lower)
	if err != nil {
		return fmt.Errorf("template %q: %w", *tpl, err)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Container %s, written by %s init on %s.\n", name, k.Program, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "# The template %s stays read-only; writes go to the layer beside this file.\n\n", *tpl)
	if common := "/usr/share/lxc/config/common.conf"; exists(common) {
		fmt.Fprintf(&b, "lxc.include = %s\n", common)
	}
	var netWarnings []string
	if def, err := os.ReadFile(*defaults); err == nil {
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
	line := hook.JoinWords(words)
	hookTypes := []string{"pre-mount", "stop", "post-stop", "clone"}
	if idm != nil {
		b.WriteString("\n# Unprivileged: the container's root is host uid/gid " + idm.String() + ";\n# its pre-mount cannot mount, so pre-start prepares the root (see " + k.Program + " --help)\n")
		for _, l := range idm.Lines() {
			fmt.Fprintf(&b, "lxc.idmap = %s\n", l)
		}
		hookTypes = append([]string{"pre-start"}, hookTypes...)
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
		// The container's root (its pre-mount) must reach rootfs/: search
		// permission, no listing.
		if err := os.Chmod(dir, 0o711); err != nil {
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
	for _, w := range netWarnings {
		fmt.Fprintf(os.Stderr, "%s init: warning: %s\n", k.Program, w)
	}
	return nil
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
