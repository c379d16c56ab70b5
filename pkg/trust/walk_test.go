package trust

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: sets other users as owners")
	}
}

// tree makes a directory in t.TempDir (root's, 0700 by MkdirTemp, under
// the root-owned sticky /tmp or the caller's TMPDIR).
func tree(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// mkdir makes p with the raw mode bits (0o1777 is sticky, unlike an
// os.FileMode) and owner.
func mkdir(t *testing.T, p string, mode uint32, uid, gid int) string {
	t.Helper()
	if err := unix.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantUntrusted(t *testing.T, err error, at string, words ...string) {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) || !errors.Is(err, ErrUntrusted) {
		t.Fatalf("want a refusal at %s, got %v", at, err)
	}
	if te.At != at {
		t.Fatalf("refusal names %s, want %s: %v", te.At, at, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("%q lacks %q", err, w)
		}
	}
}

func TestOpenDirOwnAndMissing(t *testing.T) {
	root := tree(t)
	d, err := OpenDir(root, "--upper")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	_, err = OpenDir(filepath.Join(root, "a", "b"), "--upper")
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || pe.Path != filepath.Join(root, "a") {
		t.Fatalf("missing: %v", err)
	}
	d, err = MkdirAll(filepath.Join(root, "a", "b"), "--upper", 0o700)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if fi, err := os.Stat(filepath.Join(root, "a", "b")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("made: %v %v", fi, err)
	}
	os.WriteFile(filepath.Join(root, "f"), nil, 0o600)
	if _, err := OpenDir(filepath.Join(root, "f"), "--upper"); !errors.Is(err, unix.ENOTDIR) {
		t.Fatalf("a file: %v", err)
	}
	if _, err := OpenDir("rel", "--upper"); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Fatalf("relative: %v", err)
	}
}

func TestWalkRefusesOthersDirectories(t *testing.T) {
	needRoot(t)
	root := tree(t)
	user := mkdir(t, filepath.Join(root, "user"), 0o755, 4242, 4242)
	mkdir(t, filepath.Join(user, "layer"), 0o700, 0, 0)
	_, err := OpenDir(filepath.Join(user, "layer"), "--upper")
	wantUntrusted(t, err, user, "not owned by root", "uid 4242", "chown root:root "+user)

	// The layer itself may not be another's, nor writable by others.
	mkdir(t, filepath.Join(root, "theirs"), 0o700, 4242, 0)
	_, err = OpenDir(filepath.Join(root, "theirs"), "--upper")
	wantUntrusted(t, err, filepath.Join(root, "theirs"), "refused: it is not owned")

	open := mkdir(t, filepath.Join(root, "open"), 0o777, 0, 0)
	mkdir(t, filepath.Join(open, "layer"), 0o700, 0, 0)
	_, err = OpenDir(filepath.Join(open, "layer"), "--upper")
	wantUntrusted(t, err, open, "writable by others", "chmod o-w "+open)

	staff := mkdir(t, filepath.Join(root, "staff"), 0o775, 0, 50)
	_, err = OpenDir(staff, "--upper")
	wantUntrusted(t, err, staff, "writable by its group", "chmod g-w")

	// LXC's container directories: 0770 root:root.
	lxc := mkdir(t, filepath.Join(root, "lxcdir"), 0o770, 0, 0)
	if d, err := OpenDir(lxc, "--upper"); err != nil {
		t.Fatal(err)
	} else {
		d.Close()
	}

	// A root-owned sticky directory may stand above, not be the layer.
	sticky := mkdir(t, filepath.Join(root, "sticky"), 0o1777, 0, 0)
	mkdir(t, filepath.Join(sticky, "layer"), 0o700, 0, 0)
	if d, err := OpenDir(filepath.Join(sticky, "layer"), "--upper"); err != nil {
		t.Fatal(err)
	} else {
		d.Close()
	}
	_, err = OpenDir(sticky, "--upper")
	wantUntrusted(t, err, sticky, "writable by others")
	// ... and a user's directory in it is the user's.
	mkdir(t, filepath.Join(sticky, "mine"), 0o755, 4242, 4242)
	_, err = MkdirAll(filepath.Join(sticky, "mine", "layer"), "--upper", 0o700)
	wantUntrusted(t, err, filepath.Join(sticky, "mine"))
	if _, err := os.Lstat(filepath.Join(sticky, "mine", "layer")); err == nil {
		t.Fatal("MkdirAll made a directory in a refused one")
	}
}

func TestWalkSymlinks(t *testing.T) {
	needRoot(t)
	root := tree(t)
	real := mkdir(t, filepath.Join(root, "real"), 0o755, 0, 0)
	mkdir(t, filepath.Join(real, "layer"), 0o700, 0, 0)
	// Root's link in root's directory: followed, its target checked.
	os.Symlink("real", filepath.Join(root, "rootlink"))
	d, err := OpenDir(filepath.Join(root, "rootlink", "layer"), "--upper")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	os.Symlink(filepath.Join(real, "layer"), filepath.Join(root, "abslink"))
	if d, err = OpenDir(filepath.Join(root, "abslink"), "--upper"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// A user's link: refused, not followed.
	ul := filepath.Join(root, "userlink")
	os.Symlink("real", ul)
	os.Lchown(ul, 4242, 4242)
	_, err = OpenDir(filepath.Join(ul, "layer"), "--upper")
	wantUntrusted(t, err, ul, "not owned by root")
	// A root link to a user's directory: the target is walked too.
	user := mkdir(t, filepath.Join(root, "user"), 0o755, 4242, 4242)
	os.Symlink(user, filepath.Join(root, "touser"))
	_, err = OpenDir(filepath.Join(root, "touser"), "--upper")
	wantUntrusted(t, err, user)
	// A loop ends.
	os.Symlink("loop", filepath.Join(root, "loop"))
	if _, err := OpenDir(filepath.Join(root, "loop"), "--upper"); !errors.Is(err, unix.ELOOP) {
		t.Fatalf("loop: %v", err)
	}
	// Parent follows a root link at the last component, and names the
	// target's own directory and name.
	os.WriteFile(filepath.Join(real, "x.img"), []byte("x"), 0o600)
	os.Symlink(filepath.Join(real, "x.img"), filepath.Join(root, "img"))
	p, name, err := Parent(filepath.Join(root, "img"), "--image")
	if err != nil || name != "x.img" || p.Path() != real {
		t.Fatalf("Parent: %v %q %v", p, name, err)
	}
	f, _, err := p.OpenChecked(name, os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	p.Close()
}

func TestOpenChecksTheFileItself(t *testing.T) {
	needRoot(t)
	root := tree(t)
	img := filepath.Join(root, "t.img")
	os.WriteFile(img, []byte("img"), 0o644)
	f, st, err := Open(img, "lower")
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Fatal(err)
	}
	f.Close()
	os.Chown(img, 4242, 0)
	_, _, err = Open(img, "lower")
	wantUntrusted(t, err, img, "refused: it is not owned")
	os.Chown(img, 0, 0)
	os.Chmod(img, 0o666)
	_, _, err = Open(img, "lower")
	wantUntrusted(t, err, img, "writable by others")
	// Anything but a directory or a file: handed back unchecked by type,
	// for the caller to refuse by what it is.
	_, st, err = Open("/dev/null", "lower")
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Fatalf("/dev/null: %v", err)
	}
}

// Inside a checked directory nothing follows a link, whoever made it.
func TestDirFollowsNoLink(t *testing.T) {
	root := tree(t)
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	os.Mkdir(filepath.Join(root, "sub"), 0o755)
	os.Symlink(victim, filepath.Join(root, "link"))
	os.Symlink(outside, filepath.Join(root, "dirlink"))
	d, err := OpenDir(root, "--upper")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var le *LinkError
	if _, err := d.ReadFile("link"); !errors.As(err, &le) {
		t.Fatalf("ReadFile through a link: %v", err)
	}
	if _, err := d.Open("dirlink/victim", os.O_RDONLY, 0); !errors.As(err, &le) {
		t.Fatalf("Open through a directory link: %v", err)
	}
	if _, err := d.Open("sub/../../x", os.O_RDONLY, 0); err == nil {
		t.Fatal("Open escaped the directory")
	}
	if _, err := d.Sub("dirlink"); !errors.As(err, &le) {
		t.Fatalf("Sub of a link: %v", err)
	}
	if err := d.Mkdir("dirlink", 0o755); !errors.As(err, &le) {
		t.Fatalf("Mkdir over a link: %v", err)
	}
	if err := d.Chown("link", os.Geteuid(), os.Getegid()); !errors.As(err, &le) {
		t.Fatalf("Chown of a link: %v", err)
	}
	// WriteFile replaces the link, never writes through it.
	if err := d.WriteFile("link", []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("victim now %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(root, "link")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("link not replaced: %v %v", fi, err)
	}
	if b, err := d.ReadFile("link"); err != nil || string(b) != "new" {
		t.Fatalf("%q %v", b, err)
	}
	if err := d.Mkdir("new", 0o751); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(root, "new")); fi.Mode().Perm() != 0o751 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	if err := d.Remove("dirlink"); err != nil || exists(outside) == false {
		t.Fatalf("Remove of a link: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(root, ".*tmp")); len(m) != 0 {
		t.Fatalf("temporary files left: %v", m)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// What the check costs a start: the walk and open of a layer directory
// four levels below /tmp (as /var/lib/lxc/NAME/layer).
func BenchmarkOpenDir(b *testing.B) {
	root, _ := filepath.EvalSymlinks(b.TempDir())
	p := filepath.Join(root, "lib", "lxc", "web1", "layer")
	if err := os.MkdirAll(p, 0o700); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		d, err := OpenDir(p, "--upper")
		if err != nil {
			b.Fatal(err)
		}
		d.Close()
	}
}
