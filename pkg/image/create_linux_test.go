package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// The temporary name of a creation is never used through a link or a
// second name: the file behind it keeps its bytes.
func TestCreateRefusesPlantedTemporaryFile(t *testing.T) {
	dir, _ := filepath.EvalSymlinks(t.TempDir())
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious"), 0o600)
	check := func(name, want string) {
		t.Helper()
		err := Create(filepath.Join(dir, name), CreateOptions{Size: MinSize})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v, want %q", name, err, want)
		}
		if b, _ := os.ReadFile(victim); string(b) != "precious" {
			t.Fatalf("victim now %q", b)
		}
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			t.Fatalf("%s was made", name)
		}
	}
	os.Symlink(victim, filepath.Join(dir, ".a.img.creating"))
	check("a.img", "is a symbolic link")
	os.Link(victim, filepath.Join(dir, ".b.img.creating"))
	check("b.img", "has 2 names")
	if _, err := os.Lstat(filepath.Join(dir, ".b.img.creating")); err != nil {
		t.Fatal("the refused temporary file was removed")
	}
}

// An image with a second name is refused, naming it.
func TestOpenRefusesHardlinkedImage(t *testing.T) {
	dir, _ := filepath.EvalSymlinks(t.TempDir())
	img := filepath.Join(dir, "x.img")
	os.WriteFile(img, nil, 0o600)
	f, err := Open(img, os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Link(img, filepath.Join(dir, "y.img"))
	_, err = Open(img, os.O_RDONLY)
	var le *LinksError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), img) {
		t.Fatalf("hardlinked image: %v", err)
	}
	os.Remove(filepath.Join(dir, "y.img"))
	os.Symlink(img, filepath.Join(dir, "z.img"))
	// A link the caller made (root, or the test's own user) is followed,
	// to a file checked as any image.
	if f, err := Open(filepath.Join(dir, "z.img"), os.O_RDONLY); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	var te *trust.Error
	os.Chmod(img, 0o666)
	if _, err := Open(img, os.O_RDONLY); !errors.As(err, &te) {
		t.Fatalf("an image anyone can write: %v", err)
	}
}
