package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
)

// growOnline uses a loop device found by number a moment earlier only if it
// is still bound to the same file with the same disk sequence number: a
// number alone names nothing once its binding is gone. Nothing is grown
// otherwise.
func TestGrowOnlineRechecksTheDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no /dev/loop-control on this machine")
	}
	dir := t.TempDir()
	mk := func(name string) *os.File {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(16 << 20)
		t.Cleanup(func() { f.Close() })
		return f
	}
	img, other := mk("img"), mk("other")
	dev, err := loop.Attach(other, loop.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close(); loop.Detach(dev.Number) })
	found, err := dev.Status()
	if err != nil {
		t.Fatal(err)
	}
	// The device of another file.
	if err := growOnline(img, found, 32<<20, false); err == nil || !strings.Contains(err.Error(), "no longer the device") {
		t.Fatalf("a device of another file: %v", err)
	}
	// The same file, but a later binding (another disk sequence number).
	stale := *found
	stale.Diskseq--
	if err := growOnline(other, &stale, 32<<20, false); err == nil || !strings.Contains(err.Error(), "no longer the device") {
		t.Fatalf("a stale binding: %v", err)
	}
	for _, f := range []*os.File{img, other} {
		if fi, _ := f.Stat(); fi.Size() != 16<<20 {
			t.Fatalf("%s grown to %d though the device was refused", f.Name(), fi.Size())
		}
	}
}
