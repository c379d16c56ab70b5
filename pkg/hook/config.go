package hook

import (
	"bufio"
	"io"
	"strings"
)

// ConfigValues reads an LXC container config and returns, for each of keys,
// its values in the order they appear ("key = value" lines; comments and
// blank lines skipped). lxc.include is not followed: the keys the hooks
// read (logging, hooks, rootfs) live in the container's own config.
func ConfigValues(r io.Reader, keys ...string) map[string][]string {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	out := map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if key = strings.TrimSpace(key); want[key] {
			out[key] = append(out[key], strings.TrimSpace(val))
		}
	}
	return out
}

// Last is the value LXC uses for a single-valued key: the last one.
func Last(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	return vals[len(vals)-1]
}

// LineKeys are the hook keys a hook line of these binaries may be on, in
// the order a reader should take the line from: pre-mount (privileged
// containers), pre-start (unprivileged ones), stop, and post-stop (configs
// written by earlier versions). The same line is on each key it uses.
var LineKeys = []string{"lxc.hook.pre-mount", "lxc.hook.pre-start", "lxc.hook.stop", "lxc.hook.post-stop"}

// HookLines returns the values of LineKeys in a config, in LineKeys order.
func HookLines(r io.Reader) []string {
	v := ConfigValues(r, LineKeys...)
	var out []string
	for _, k := range LineKeys {
		out = append(out, v[k]...)
	}
	return out
}
