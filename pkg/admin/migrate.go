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
	"golang.org/x/sys/unix"
)

const migrateAbout = `Rewrites the hook lines of containers written by earlier versions to the
current ones: one hook process per start and one per stop. A privileged
container's line goes on lxc.hook.pre-mount and lxc.hook.stop, an
unprivileged container's (lxc.idmap) on lxc.hook.pre-start and
lxc.hook.stop; lxc.hook.post-stop (and an unprivileged container's
lxc.hook.pre-mount) are removed, lxc.hook.clone is added where missing. The
line itself, and every other line of the config, is kept byte for byte. An
unprivileged container's directory that every local user may pass (0711,
as earlier versions of init made it) is closed to them (0710, group of the
container's root). Without NAME: every container under the LXC path that
uses this binary. Configs written by earlier versions start and stop all the
same (the redundant hooks return at once); migrating saves their processes.
A running container keeps running; the new lines take effect at its next
start.`

func cmdMigrate(k Kind, args []string, stdout io.Writer) error {
	fs := flags(k, "migrate", "[NAME...] [-P LXCPATH] [--dry-run]", migrateAbout, stdout)
	lxcpath := fs.String("P", "", "`LXCPATH` of the containers (default: LXC's lxc.lxcpath)")
	fs.StringVar(lxcpath, "lxcpath", "", "same as -P")
	dry := fs.Bool("dry-run", false, "say what would change, change nothing")
	names, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *lxcpath == "" {
		*lxcpath = defaultLXCPath()
	}
	all := len(names) == 0
	if all {
		cs, err := containers(*lxcpath)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Err != nil || c.Hook.Program == k.Program {
				names = append(names, c.Name)
			}
		}
		if len(names) == 0 {
			fmt.Fprintf(stdout, "no container under %s uses %s\n", *lxcpath, k.Program)
			return nil
		}
	}
	var failed []string
	for _, name := range names {
		cfg := filepath.Join(*lxcpath, name, "config")
		changes, err := migrateConfig(cfg, *dry)
		switch {
		case err != nil:
			failed = append(failed, name)
			fmt.Fprintf(stdout, "%s: %v\n", name, err)
		case len(changes) == 0:
			fmt.Fprintf(stdout, "%s: already current\n", name)
		default:
			verb := "migrated"
			if *dry {
				verb = "would migrate"
			}
			fmt.Fprintf(stdout, "%s: %s: %s\n", name, verb, strings.Join(changes, "; "))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("not migrated: %s", strings.Join(failed, ", "))
	}
	return nil
}

// migrateConfig rewrites the config cfg (see migrateAbout) and returns
// what it changed.
func migrateConfig(cfg string, dry bool) ([]string, error) {
	b, err := os.ReadFile(cfg)
	if err != nil {
		return nil, err
	}
	unpriv := len(hook.ConfigValues(strings.NewReader(string(b)), idmap.ConfigKey)[idmap.ConfigKey]) > 0
	out, changes, err := migrateText(string(b), unpriv)
	if err != nil {
		return nil, err
	}
	if unpriv {
		m, err := idmap.ParseLXC(hook.ConfigValues(strings.NewReader(string(b)), idmap.ConfigKey)[idmap.ConfigKey])
		if err != nil {
			return nil, err
		}
		gid, _ := m.RootGID()
		dir := filepath.Dir(cfg)
		var st unix.Stat_t
		if unix.Lstat(dir, &st) == nil && st.Uid == 0 && st.Gid == 0 && st.Mode&0o7777 == 0o711 {
			changes = append(changes, fmt.Sprintf("%s 0711 root:root -> 0710 root:%d", dir, gid))
			if !dry {
				if err := os.Chown(dir, 0, int(gid)); err != nil {
					return nil, err
				}
				if err := os.Chmod(dir, 0o710); err != nil {
					return nil, err
				}
			}
		}
	}
	if dry || out == string(b) {
		return changes, nil
	}
	return changes, replaceFile(cfg, []byte(out))
}

// migrateText rewrites a config text's hook lines: the hook's line (the
// first lxc-hook-* line on a hook.LineKeys key) ends up on HookTypes(unpriv)
// and on no other of those keys; other lines stay byte for byte.
func migrateText(config string, unpriv bool) (string, []string, error) {
	lines := strings.Split(config, "\n")
	want := map[string]bool{}
	for _, t := range HookTypes(unpriv) {
		want["lxc.hook."+t] = true
	}
	lineKey := map[string]bool{"lxc.hook.clone": true}
	for _, k := range hook.LineKeys {
		lineKey[k] = true
	}
	ours := func(val string) bool {
		words, err := hook.SplitWords(val)
		return err == nil && len(words) > 0 && strings.HasPrefix(filepath.Base(words[0]), "lxc-hook-")
	}
	have := map[string]bool{}
	hookLine, last := "", -1
	var kept []string
	var changes []string
	for _, line := range lines {
		key, val, ok := strings.Cut(line, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !ok || strings.HasPrefix(key, "#") || !lineKey[key] || !ours(val) {
			kept = append(kept, line)
			continue
		}
		if key != "lxc.hook.clone" && hookLine == "" {
			hookLine = val
		}
		if !want[key] || have[key] {
			changes = append(changes, key+" removed")
			continue
		}
		have[key] = true
		kept = append(kept, line)
		last = len(kept) - 1
	}
	if hookLine == "" {
		return "", nil, errors.New("no lxc-hook-* line on lxc.hook.pre-mount, pre-start, stop or post-stop")
	}
	var add []string
	for _, t := range HookTypes(unpriv) {
		if k := "lxc.hook." + t; !have[k] {
			add = append(add, fmt.Sprintf("%s = %s", k, hookLine))
			changes = append(changes, k+" added")
		}
	}
	if len(add) > 0 {
		at := last + 1
		if last < 0 {
			at = len(kept)
			for at > 0 && kept[at-1] == "" {
				at-- // before the trailing blank line
			}
		}
		kept = append(kept[:at], append(add, kept[at:]...)...)
	}
	return strings.Join(kept, "\n"), changes, nil
}
