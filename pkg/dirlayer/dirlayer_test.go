package dirlayer

import (
	"encoding/json"
	"errors"
	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/lxc-hooks/lxc-hooks/pkg/layer"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

func ctx() *runner.Context {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return &runner.Context{Log: logrus.NewEntry(l), Inv: &hook.Invocation{Name: "c1", ConfigFile: "/lxc/c1/config"}}
}

func marker(t *testing.T, dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, layer.MarkerName))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestPrepareMakesLayer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layer")
	w, err := Prepare(dir, layer.Overlay)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("layer dir mode %v", fi.Mode().Perm())
	}
	if w.Upper != filepath.Join(dir, "upper") || w.Work != filepath.Join(dir, "work") || marker(t, dir) != layer.Overlay {
		t.Fatalf("%+v", w)
	}
	fi, _ = os.Stat(w.Upper)
	if fi.Mode().Perm() != 0o755 {
		t.Fatalf("upper mode %v: it becomes the container's /", fi.Mode().Perm())
	}
}

func TestPrepareRefusesFileAsUpper(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := Prepare(f, layer.Overlay); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Fatalf("got %v", err)
	}
}

func TestAufsWithoutAufsRefuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layer")
	a := &Aufs{Flags: Flags{Upper: dir}, HasAufs: func() bool { return false }}
	if _, err := a.PrepareWritable(ctx()); !errors.Is(err, ErrNoAufs) {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("refused start created the layer")
	}
	if !strings.Contains(ErrNoAufs.Error(), "--fallback=overlay") || !strings.Contains(ErrNoAufs.Error(), "lxc-hook-overlay") {
		t.Fatal("the error does not name the alternatives")
	}
}

func TestAufsFallbackWritesOverlayLayer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layer")
	a := &Aufs{Flags: Flags{Upper: dir, Fallback: "overlay"}, HasAufs: func() bool { return false }}
	if _, err := a.PrepareWritable(ctx()); err != nil {
		t.Fatal(err)
	}
	if a.union != layer.Overlay || marker(t, dir) != layer.Overlay {
		t.Fatalf("union %s, marker %s", a.union, marker(t, dir))
	}
	// Without the fallback, aufs now refuses that layer, for its marker,
	// whatever the kernel has.
	for _, has := range []bool{false, true} {
		b := &Aufs{Flags: Flags{Upper: dir}, HasAufs: func() bool { return has }}
		_, err := b.PrepareWritable(ctx())
		if err == nil || !strings.Contains(err.Error(), "written by overlay") {
			t.Fatalf("kernel has aufs=%v: %v", has, err)
		}
	}
}

func TestAufsWithAufsMarksLayer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layer")
	a := &Aufs{Flags: Flags{Upper: dir}, HasAufs: func() bool { return true }}
	if _, err := a.PrepareWritable(ctx()); err != nil {
		t.Fatal(err)
	}
	if marker(t, dir) != layer.Aufs {
		t.Fatal("layer not marked aufs")
	}
	o := &Overlay{Flags: Flags{Upper: dir}}
	if _, err := o.PrepareWritable(ctx()); err == nil || !strings.Contains(err.Error(), "written by aufs") || !strings.Contains(err.Error(), "lxc-hook-aufs") {
		t.Fatalf("overlay over an aufs layer: %v", err)
	}
}

func TestValidate(t *testing.T) {
	if err := (&Aufs{Flags: Flags{Upper: "/x", Fallback: "btrfs"}}).Validate(""); err == nil || !strings.Contains(err.Error(), `--fallback "btrfs"`) {
		t.Fatalf("got %v", err)
	}
	if err := (&Overlay{}).Validate(""); err == nil {
		t.Fatal("missing --upper accepted with no config to put it beside")
	}
	o := &Overlay{}
	if err := o.Validate("/var/lib/lxc/web1/config"); err != nil || o.Upper != "/var/lib/lxc/web1/layer" {
		t.Fatalf("default upper: %q %v", o.Upper, err)
	}
	if err := (&Overlay{Flags: Flags{Upper: "rel"}}).Validate("/var/lib/lxc/web1/config"); err == nil {
		t.Fatal("relative --upper accepted")
	}
}

// A layer claimed by a live container is refused, naming it; a claim whose
// namespace is gone (a crash) is taken over; post-stop drops only its own.
func TestClaim(t *testing.T) {
	dir := t.TempDir()
	self, err := holders.MountNSID("/proc/self/ns/mnt")
	if err != nil {
		t.Skip("no mount namespace ids here:", err)
	}
	write := func(config string, id uint64) {
		b, _ := json.Marshal(claim{Container: "other", Config: config, MountNSID: id})
		os.WriteFile(filepath.Join(dir, InUseName), b, 0o600)
	}
	d, err := trust.OpenDir(dir, "--upper")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	write("/lxc/other/config", self) // a live namespace: this test's own
	if err := Claim(ctx(), d); err == nil || !strings.Contains(err.Error(), "container other (/lxc/other/config)") {
		t.Fatalf("live claim: %v", err)
	}
	write("/lxc/other/config", self+1<<40) // a namespace that does not exist
	c := ctx()
	if err := Claim(c, d); err != nil {
		t.Fatalf("stale claim: %v", err)
	}
	if cl, _ := readClaim(d); cl.Config != "/lxc/c1/config" || cl.MountNSID != self {
		t.Fatalf("claim %+v", cl)
	}
	other := ctx()
	other.Inv = &hook.Invocation{Name: "c2", ConfigFile: "/lxc/c2/config"}
	Release(other, dir)
	if !exists(filepath.Join(dir, InUseName)) {
		t.Fatal("another container's release dropped the claim")
	}
	Release(c, dir)
	if exists(filepath.Join(dir, InUseName)) {
		t.Fatal("release left the claim")
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// Each binary's --help documents only the flags it accepts: lxc-hook-aufs
// has no ephemeral mode, so no --ephemeral and no --size.
func TestHelpListsOnlyAcceptedFlags(t *testing.T) {
	var aufs, overlay strings.Builder
	runner.Usage(&Aufs{}, &aufs)
	runner.Usage(&Overlay{}, &overlay)
	for _, f := range []string{"-ephemeral", "-size"} {
		if strings.Contains(aufs.String(), f) {
			t.Errorf("lxc-hook-aufs --help documents %s, which it refuses:\n%s", f, aufs.String())
		}
		if !strings.Contains(overlay.String(), f) {
			t.Errorf("lxc-hook-overlay --help lacks %s", f)
		}
	}
	if !strings.Contains(aufs.String(), "-fallback") {
		t.Errorf("lxc-hook-aufs --help lacks --fallback")
	}
}

// lxc-hook-aufs records and checks the layer's owner as overlay does: a
// second config naming the same --upper is refused while the first still
// names it.
func TestAufsChecksOwner(t *testing.T) {
	d := t.TempDir()
	upper := filepath.Join(d, "shared")
	line := "lxc.hook.pre-mount = /x/lxc-hook-aufs --upper " + upper + " --fallback=overlay\n"
	cfgs := []string{filepath.Join(d, "a", "config"), filepath.Join(d, "b", "config")}
	for _, c := range cfgs {
		os.MkdirAll(filepath.Dir(c), 0o755)
		os.WriteFile(c, []byte(line), 0o644)
	}
	start := func(cfg string) error {
		c := ctx()
		c.Inv = &hook.Invocation{Name: filepath.Base(filepath.Dir(cfg)), ConfigFile: cfg}
		a := &Aufs{Flags: Flags{Upper: upper, Fallback: "overlay"}, HasAufs: func() bool { return false }}
		_, err := a.PrepareWritable(c)
		if err != nil {
			for i := len(c.Undo) - 1; i >= 0; i-- { // what the runner does
				c.Undo[i]()
			}
		} else {
			a.AfterStop(c)
		}
		return err
	}
	if err := start(cfgs[0]); err != nil {
		t.Fatal(err)
	}
	if err := start(cfgs[1]); err == nil || !strings.Contains(err.Error(), "belongs to the container of "+cfgs[0]) {
		t.Fatalf("second config on the same layer: %v", err)
	}
	if err := start(cfgs[0]); err != nil {
		t.Fatalf("the owner again: %v", err)
	}
}
