package trust

import (
	"strings"
	"testing"
)

// The rule on stat results alone: no root needed.
func TestProblem(t *testing.T) {
	const dir, file, link = 0o040000, 0o100000, 0o120000
	for _, tc := range []struct {
		name    string
		e       Entry
		r       Role
		problem string
		fix     string
	}{
		{"root dir 0755", Entry{dir | 0o755, 0, 0}, Above, "", ""},
		{"root dir 0700 itself", Entry{dir | 0o700, 0, 0}, Itself, "", ""},
		{"the caller's own dir", Entry{dir | 0o755, 1000, 1000}, Itself, "", ""},
		{"another user's dir", Entry{dir | 0o755, 1001, 1001}, Above, "is not owned by root", "chown root:root"},
		{"world-writable dir", Entry{dir | 0o777, 0, 0}, Above, "is writable by others", "chmod o-w"},
		{"/tmp above", Entry{dir | 0o1777, 0, 0}, Above, "", ""},
		{"/tmp as the layer itself", Entry{dir | 0o1777, 0, 0}, Itself, "is writable by others", "chmod o-w"},
		{"sticky dir of a user", Entry{dir | 0o1777, 1001, 0}, Above, "is not owned by root and is writable by others", "chown root:root and chmod o-w"},
		{"group root may write (LXC's 0770)", Entry{dir | 0o770, 0, 0}, Itself, "", ""},
		{"group staff may not", Entry{dir | 0o775, 0, 50}, Above, "is writable by its group", "chmod g-w"},
		{"group and others", Entry{dir | 0o777, 0, 50}, Itself, "is writable by others and is writable by its group", "chmod go-w"},
		{"root image 0600", Entry{file | 0o600, 0, 0}, Itself, "", ""},
		{"image 0666", Entry{file | 0o666, 0, 0}, Itself, "is writable by others", "chmod o-w"},
		{"sticky bit on a file helps nothing", Entry{file | 0o1666, 0, 0}, Above, "is writable by others", "chmod o-w"},
		{"user's image", Entry{file | 0o600, 1001, 1001}, Itself, "is not owned by root", "chown root:root"},
		{"root's link", Entry{link | 0o777, 0, 0}, Link, "", ""},
		{"user's link", Entry{link | 0o777, 1001, 1001}, Link, "is not owned by root", "chown root:root"},
	} {
		p, fix := Problem(tc.e, tc.r, 1000)
		if p != tc.problem || fix != tc.fix {
			t.Errorf("%s: got %q / %q, want %q / %q", tc.name, p, fix, tc.problem, tc.fix)
		}
	}
}

func TestErrorNamesPathOwnerAndFix(t *testing.T) {
	e := &Error{What: "--upper", Path: "/home/m/layer", At: "/home/m", Entry: Entry{0o040755, 4242, 4242},
		Problem: "is not owned by root", Fix: "chown root:root"}
	msg := e.Error()
	for _, want := range []string{`--upper "/home/m/layer" is refused`, "/home/m is not owned by root", "uid 4242", "mode 0755", "chown root:root /home/m"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Error("not one line")
	}
	e.At = e.Path
	if !strings.Contains(e.Error(), "refused: it is not owned") {
		t.Errorf("the thing itself: %q", e.Error())
	}
	if quoteArg("/a b/c") != "'/a b/c'" || quoteArg("/a/b") != "/a/b" {
		t.Error("quoteArg")
	}
}
