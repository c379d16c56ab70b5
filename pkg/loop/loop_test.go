package loop

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func requireLoop(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no /dev/loop-control on this machine")
	}
}

func backingFile(t testing.TB, dir string) (*os.File, uint64, uint64) {
	t.Helper()
	f, err := os.CreateTemp(dir, "backing")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 << 20); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Fstat(int(f.Fd()), &st)
	return f, uint64(st.Dev), st.Ino
}

func TestAttachFindAutoclear(t *testing.T) {
	requireLoop(t)
	f, dev, ino := backingFile(t, t.TempDir())
	defer f.Close()
	d, err := Attach(f, Options{ReadOnly: true, Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.ReadOnly() || !st.Autoclear() || st.BackingDev != dev || st.BackingIno != ino {
		t.Fatalf("status %+v", st)
	}
	if st.BackingFile != f.Name() {
		t.Fatalf("backing file %q, want %q", st.BackingFile, f.Name())
	}
	found, err := FindByBacking(dev, ino)
	if err != nil || len(found) != 1 || found[0].Number != d.Number || found[0].Diskseq != d.Diskseq {
		t.Fatalf("FindByBacking: %+v %v", found, err)
	}
	d.Close() // nothing mounted it: autoclear frees it now
	if _, err := StatusOf(d.Number); !IsUnbound(err) {
		t.Fatalf("still bound after the last close: %v", err)
	}
	if found, _ := FindByBacking(dev, ino); len(found) != 0 {
		t.Fatalf("found after detach: %+v", found)
	}
}

func TestDetachVerifies(t *testing.T) {
	requireLoop(t)
	f, _, _ := backingFile(t, t.TempDir())
	defer f.Close()
	d, err := Attach(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	holder, err := Open(d.Number)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	// Busy: LOOP_CLR_FD answers success and only arms autoclear.
	if err := Detach(d.Number); !errors.Is(err, ErrStillAttached) {
		holder.Close()
		t.Fatalf("busy detach: %v", err)
	}
	holder.Close() // the armed autoclear frees it
	if _, err := StatusOf(d.Number); !IsUnbound(err) {
		t.Fatalf("still bound after the holder closed: %v", err)
	}
	if err := Detach(d.Number); err != nil {
		t.Fatalf("detaching an unbound device: %v", err)
	}
}

// Concurrent attaches race for the same free device: the bounded retry
// makes every one succeed, each on its own device.
func TestConcurrentAttach(t *testing.T) {
	requireLoop(t)
	const n = 16
	dir := t.TempDir()
	files := make([]*os.File, n)
	for i := range files {
		files[i], _, _ = backingFile(t, dir)
		defer files[i].Close()
	}
	devs := make([]*Device, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			devs[i], errs[i] = Attach(files[i], Options{Autoclear: true})
		}(i)
	}
	wg.Wait()
	seen := map[int]bool{}
	for i := range devs {
		if errs[i] != nil {
			t.Errorf("attach %d: %v", i, errs[i])
			continue
		}
		if seen[devs[i].Number] {
			t.Errorf("device %d handed out twice", devs[i].Number)
		}
		seen[devs[i].Number] = true
		st, err := devs[i].Status()
		if err != nil || st.BackingFile != files[i].Name() {
			t.Errorf("device %d bound to %v (%v), want %s", devs[i].Number, st, err, files[i].Name())
		}
	}
	seq := map[int]uint64{}
	for _, d := range devs {
		if d != nil {
			seq[d.Number] = d.Diskseq
			d.Close()
		}
	}
	// Other processes attach loop devices too and may get a freed number
	// at once: only the same disk sequence number is this test's binding.
	for n := range seen {
		if st, err := StatusOf(n); !IsUnbound(err) && err == nil && st.Diskseq == seq[n] {
			t.Errorf("loop%d left bound", n)
		}
	}
}

// BenchmarkAttach is the loop attach time the hooks pay per image.
func BenchmarkAttach(b *testing.B) {
	requireLoop(b)
	f, _, _ := backingFile(b, b.TempDir())
	defer f.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := Attach(f, Options{ReadOnly: true, Autoclear: true})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		d.Close()
		b.StartTimer()
	}
}

func TestAttachSharedAdopts(t *testing.T) {
	requireLoop(t)
	dir := t.TempDir()
	f, dev, ino := backingFile(t, dir)
	defer f.Close()
	hints := filepath.Join(dir, "hints")
	a, adopted, err := AttachShared(f, hints)
	if err != nil || adopted {
		t.Fatalf("first: adopted=%v %v", adopted, err)
	}
	b, adopted, err := AttachShared(f, hints)
	if err != nil || !adopted || b.Number != a.Number {
		t.Fatalf("second: adopted=%v device %d (first %d) %v", adopted, b.Number, a.Number, err)
	}
	// Without the hint, the scan finds it too.
	c, adopted, err := AttachShared(f, "")
	if err != nil || !adopted || c.Number != a.Number {
		t.Fatalf("scan: adopted=%v device %d %v", adopted, c.Number, err)
	}
	if found, _ := FindByBacking(dev, ino); len(found) != 1 {
		t.Fatalf("%d devices for one template", len(found))
	}
	a.Close()
	b.Close()
	c.Close() // the last holder: autoclear frees it
	if found, _ := FindByBacking(dev, ino); len(found) != 0 {
		t.Fatalf("left bound: %+v", found)
	}
	// A stale hint (device gone) leads to a fresh attach.
	d, adopted, err := AttachShared(f, hints)
	if err != nil || adopted {
		t.Fatalf("after release: adopted=%v %v", adopted, err)
	}
	d.Close()
}

// A writable or partial binding of the same file is never adopted.
func TestAttachSharedIgnoresOtherBindings(t *testing.T) {
	requireLoop(t)
	f, _, _ := backingFile(t, t.TempDir())
	defer f.Close()
	rw, err := Attach(f, Options{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	ro, adopted, err := AttachShared(f, "")
	if err != nil || adopted || ro.Number == rw.Number {
		t.Fatalf("adopted a read-write device: %v %v", adopted, err)
	}
	ro.Close()
}

// Many adopters and releasers at once: every attach gets a working device
// bound to the file, and nothing is left once all have closed.
func TestAttachSharedChurn(t *testing.T) {
	requireLoop(t)
	dir := t.TempDir()
	f, dev, ino := backingFile(t, dir)
	defer f.Close()
	hints := filepath.Join(dir, "hints")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				d, _, err := AttachShared(f, hints)
				if err != nil {
					errs <- err
					return
				}
				st, err := d.Status()
				if err != nil || st.BackingIno != ino {
					errs <- fmt.Errorf("adopted a device not bound to the template: %v %v", st, err)
				}
				d.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if found, _ := FindByBacking(dev, ino); len(found) != 0 {
		t.Fatalf("left bound: %+v", found)
	}
}
