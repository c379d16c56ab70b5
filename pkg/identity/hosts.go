package identity

import (
	"strings"
)

// ValidHostname reports whether name can be written as a hostname: 1 to 64
// characters (the kernel's limit), letters, digits, '-', '_' and '.', not
// starting or ending with '.' or '-', no empty label. A container name
// outside that (LXC allows blanks) is kept out of /etc/hostname, where a
// distribution's init would refuse it or cut it.
func ValidHostname(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Hosts returns the text of /etc/hosts with the 127.0.1.1 line naming
// name, as LXC's debian template writes it ("127.0.1.1   NAME"), and
// whether it changed.
//
// old is the hostname the container had (a copy or a rename): on the
// 127.0.1.1 lines, that name and the names whose first label it is
// (old.example.org) get name instead, and everything else stays. old ""
// means a new layer, whose 127.0.1.1 line names whoever built the
// template: its names are replaced by name, and without such a line one is
// added after the 127.0.0.1 line (or at the end).
func Hosts(text, name, old string) (string, bool) {
	lines := strings.SplitAfter(text, "\n")
	changed, found := false, false
	for i, line := range lines {
		body, nl := strings.CutSuffix(line, "\n")
		addr, names, comment, ok := splitHostsLine(body)
		if !ok || addr != "127.0.1.1" {
			continue
		}
		found = true
		var out []string
		if old == "" {
			out = []string{name}
		} else {
			for _, n := range names {
				switch {
				case n == old:
					n = name
				case strings.HasPrefix(n, old+"."):
					n = name + strings.TrimPrefix(n, old)
				}
				out = append(out, n)
			}
		}
		if strings.Join(out, " ") == strings.Join(names, " ") {
			continue
		}
		nl2 := ""
		if nl {
			nl2 = "\n"
		}
		lines[i] = "127.0.1.1\t" + strings.Join(out, " ") + comment + nl2
		changed = true
	}
	if found || old != "" {
		return strings.Join(lines, ""), changed
	}
	// No 127.0.1.1 line in a new layer: add one where Debian has it.
	add := "127.0.1.1\t" + name + "\n"
	for i, line := range lines {
		if addr, _, _, ok := splitHostsLine(strings.TrimSuffix(line, "\n")); ok && addr == "127.0.0.1" {
			if !strings.HasSuffix(line, "\n") {
				lines[i] += "\n"
			}
			lines = append(lines[:i+1], append([]string{add}, lines[i+1:]...)...)
			return strings.Join(lines, ""), true
		}
	}
	out := strings.Join(lines, "")
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out + add, true
}

// splitHostsLine splits "ADDR NAME... # comment"; comment keeps its
// leading blank and '#'. ok is false for a blank or comment-only line.
func splitHostsLine(line string) (addr string, names []string, comment string, ok bool) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		comment = line[i:]
		line = line[:i]
		if strings.TrimSpace(line) != "" {
			comment = " " + comment
		}
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", nil, "", false
	}
	return f[0], f[1:], comment, true
}
