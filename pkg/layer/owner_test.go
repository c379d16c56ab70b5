package layer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckOwner(t *testing.T) {
	d := t.TempDir()
	a, b := filepath.Join(d, "a", "config"), filepath.Join(d, "b", "config")
	os.MkdirAll(filepath.Dir(a), 0o755)
	os.MkdirAll(filepath.Dir(b), 0o755)
	shared := filepath.Join(d, "shared")
	os.MkdirAll(shared, 0o700)
	line := "lxc.hook.pre-mount = /usr/share/lxc/hooks/lxc-hook-overlay --upper " + shared + "\n"
	os.WriteFile(a, []byte(line), 0o644)
	os.WriteFile(b, []byte(line), 0o644)

	// The first start records its owner; the same config passes again.
	for i := 0; i < 2; i++ {
		if err := CheckOwner(openDir(t, shared), shared, "layer", a, "lxc-hook-overlay"); err != nil {
			t.Fatal(err)
		}
	}
	// Another config naming the same layer: refused while a names it.
	err := CheckOwner(openDir(t, shared), shared, "layer", b, "lxc-hook-overlay")
	if err == nil || !strings.Contains(err.Error(), "lxc-hook-overlay copy SRC DST") {
		t.Fatalf("shared layer: %v", err)
	}
	// a gives the layer up (names another): b takes it over.
	os.WriteFile(a, []byte("lxc.hook.pre-mount = /x/lxc-hook-overlay --upper=/elsewhere\n"), 0o644)
	if err := CheckOwner(openDir(t, shared), shared, "layer", b, "lxc-hook-overlay"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(shared, OwnerName)); strings.TrimSpace(string(got)) != b {
		t.Fatalf("owner now %q", got)
	}
	// The default layer beside a config claims it without a flag.
	def := filepath.Join(d, "b", "layer")
	os.MkdirAll(def, 0o700)
	os.WriteFile(b, []byte("lxc.hook.pre-mount = /x/lxc-hook-overlay --lower /t\n"), 0o644)
	CheckOwner(openDir(t, def), def, "layer", b, "lxc-hook-overlay")
	if err := CheckOwner(openDir(t, def), def, "layer", a, "lxc-hook-overlay"); err == nil {
		t.Fatal("another config took b's default layer")
	}
	// b gone (renamed, destroyed): the layer passes on.
	os.Remove(b)
	if err := CheckOwner(openDir(t, def), def, "layer", a, "lxc-hook-overlay"); err != nil {
		t.Fatal(err)
	}
}

func TestCheckImageOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("trusted.* xattrs need root")
	}
	d := t.TempDir()
	img := filepath.Join(d, "x.img")
	a, b := filepath.Join(d, "a", "config"), filepath.Join(d, "b", "config")
	os.MkdirAll(filepath.Dir(a), 0o755)
	os.MkdirAll(filepath.Dir(b), 0o755)
	line := "lxc.hook.pre-mount = /x/lxc-hook-loopimg --image " + img + "\n"
	os.WriteFile(a, []byte(line), 0o644)
	os.WriteFile(b, []byte(line), 0o644)
	f, _ := os.Create(img)
	defer f.Close()
	if err := CheckImageOwner(f, img, "layer.img", a, "lxc-hook-loopimg"); err != nil {
		t.Fatal(err)
	}
	if err := CheckImageOwner(f, img, "layer.img", b, "lxc-hook-loopimg"); err == nil {
		t.Fatal("a second config took the image")
	}
}
