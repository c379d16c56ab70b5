package progress

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeClock moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

// parserMeter is a meter whose clock moves a second at every look, so
// that every update is drawn: the parsers' tests see each figure.
func parserMeter(w *bytes.Buffer) *Meter {
	c := &fakeClock{t: time.Unix(1000, 0)}
	return &Meter{w: w, width: func() int { return 0 }, now: func() time.Time { c.add(time.Second); return c.t }}
}

func testMeter(w *bytes.Buffer, width int) (*Meter, *fakeClock) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	return &Meter{w: w, width: func() int { return width }, now: c.now}, c
}

// lastLine is what a terminal shows on the line last drawn: the text
// after the last '\r', without the erase sequence.
func lastLine(s string) string {
	s = strings.TrimSuffix(s, "\n")
	if i := strings.LastIndex(s, "\r"); i >= 0 {
		s = s[i+1:]
	}
	return strings.ReplaceAll(s, "\x1b[K", "")
}

func TestNilMeterDoesNothing(t *testing.T) {
	var m *Meter
	m.Step("x")
	m.Bytes(1, 2)
	m.Count(1, 2, "files")
	m.Fraction(0.5, "")
	m.Text("t")
	m.End(nil)
	m.End(errors.New("e"))
}

func TestNewOnlyOnTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if New(w) != nil {
		t.Fatal("a pipe got a meter")
	}
	if New(&bytes.Buffer{}) != nil {
		t.Fatal("a buffer got a meter")
	}
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if New(f) != nil {
		t.Fatal("a regular file got a meter")
	}
}

func TestStepLines(t *testing.T) {
	var b bytes.Buffer
	m, clock := testMeter(&b, 0)
	m.Step("copying the layer")
	if got := lastLine(b.String()); got != "copying the layer" {
		t.Fatalf("first draw %q", got)
	}
	m.Bytes(1<<20, 4<<20)
	if got := lastLine(b.String()); got != "copying the layer: 1.0M of 4.0M (25%)" {
		t.Fatalf("after Bytes: %q", got)
	}
	// Within redrawEvery: not drawn again.
	n := b.Len()
	m.Bytes(2<<20, 4<<20)
	if b.Len() != n {
		t.Fatalf("redrawn within %s: %q", redrawEvery, b.String()[n:])
	}
	clock.add(2500 * time.Millisecond)
	m.Bytes(3<<20, 4<<20)
	if got := lastLine(b.String()); got != "copying the layer: 3.0M of 4.0M (75%)" {
		t.Fatalf("after the wait: %q", got)
	}
	m.End(nil)
	if !strings.HasSuffix(b.String(), "\n") {
		t.Fatalf("the step's line is not ended: %q", b.String())
	}
	if got := lastLine(b.String()); got != "copying the layer: 4.0M of 4.0M (100%), done in 2.5s" {
		t.Fatalf("done line %q", got)
	}
	// A failed step's line ends as it stands, saying so.
	b.Reset()
	m.Step("checking")
	m.Fraction(0.4, "pass 1 of 5")
	m.End(errors.New("boom"))
	if got := b.String(); !strings.HasSuffix(got, "\n") || strings.Contains(got, "done") || lastLine(got) != "checking: pass 1 of 5 (40%), failed" {
		t.Fatalf("failed step: %q", got)
	}
	// End without a step, twice: nothing.
	b.Reset()
	m.End(nil)
	if b.Len() != 0 {
		t.Fatalf("End without a step wrote %q", b.String())
	}
}

func TestStepWithoutFiguresAndWidth(t *testing.T) {
	var b bytes.Buffer
	m, _ := testMeter(&b, 20)
	m.Step("growing the filesystem (resize2fs)")
	if got := lastLine(b.String()); got != "growing the filesyst"[:19] {
		t.Fatalf("not cut to the terminal's width less one: %q", got)
	}
	b.Reset()
	m2, _ := testMeter(&b, 0)
	m2.Step("formatting")
	m2.End(nil)
	if got := lastLine(b.String()); got != "formatting: done in 0.0s" {
		t.Fatalf("%q", got)
	}
	// A new step ends the line of one not ended.
	b.Reset()
	m2.Step("a")
	m2.Step("b")
	if !strings.Contains(b.String(), "a\x1b[K\n\rb") {
		t.Fatalf("%q", b.String())
	}
}

// feed writes s to w in chunks of n bytes, as a pipe may deliver it.
func feed(w interface{ Write([]byte) (int, error) }, s string, n int) {
	for len(s) > 0 {
		k := min(n, len(s))
		w.Write([]byte(s[:k]))
		s = s[k:]
	}
}

// What mksquashfs 4.5.1 writes on an 80-column terminal (recorded here).
const squashfsOut = "\r[=====================/                                  ]  225/400  56%" +
	"\r[=========================================================|] 400/400 100%\r\n"

func TestSquashfs(t *testing.T) {
	for _, chunk := range []int{1, 7, 4096} {
		var b bytes.Buffer
		m := parserMeter(&b)
		m.Step("writing")
		w := Squashfs(m)
		feed(w, squashfsOut[:strings.Index(squashfsOut, "\r[==========================================")], chunk)
		if got := lastLine(b.String()); got != "writing: 225 of 400 blocks (56%)" {
			t.Fatalf("chunk %d: %q", chunk, got)
		}
		feed(w, squashfsOut[strings.Index(squashfsOut, "\r[=========================================="):], chunk)
		if got := lastLine(b.String()); got != "writing: 400 of 400 blocks (100%)" {
			t.Fatalf("chunk %d: %q", chunk, got)
		}
	}
}

func TestErofs(t *testing.T) {
	// mkfs.erofs 1.5 without --quiet (recorded here).
	out := "<W> erofs: EXPERIMENTAL chunked file feature in use. Use at your own risk!\nmkfs.erofs 1.5\n" +
		"\x1b[KProcessing a/f1 ...\r\x1b[KProcessing a/f2 ...\r\x1b[KProcessing l ...\r\x1b[KBuild completed.\n"
	for _, chunk := range []int{1, 5, 11, 4096} {
		var b bytes.Buffer
		m := parserMeter(&b)
		m.Step("writing")
		w := Erofs(m, 4)
		feed(w, out, chunk)
		if got := lastLine(b.String()); !strings.HasPrefix(got, "writing: ") || !strings.Contains(b.String(), "3 of 4 files (75%)") {
			t.Fatalf("chunk %d: %q", chunk, b.String())
		}
		if got := w.(*erofsFiles).done; got != 3 {
			t.Fatalf("chunk %d: counted %d files, want 3", chunk, got)
		}
	}
}

func TestE2fsck(t *testing.T) {
	var b bytes.Buffer
	m := parserMeter(&b)
	m.Step("checking")
	w := E2fsck(m)
	feed(w, "1 0 16 /proc/self/fd/3\n1 8 16 /proc/self/fd/3\n", 3)
	if got := lastLine(b.String()); got != "checking: pass 1 of 5, inodes, blocks and sizes (35%)" {
		t.Fatalf("%q", got)
	}
	feed(w, "2 12 24 /proc/self/fd/3\n", 100)
	if got := lastLine(b.String()); got != "checking: pass 2 of 5, directory structure (80%)" {
		t.Fatalf("%q", got)
	}
	feed(w, "junk\n5 32 32 x\n", 100)
	if got := lastLine(b.String()); got != "checking: pass 5 of 5, group summary (100%)" {
		t.Fatalf("%q", got)
	}
}

func TestResize2fs(t *testing.T) {
	// resize2fs 1.47.0 -p moving an inode table (recorded here).
	out := "resize2fs 1.47.0 (5-Feb-2023)\nResizing the filesystem on /proc/self/fd/3 to 52428800 (4k) blocks.\n" +
		"Begin pass 5 (max = 1)\nMoving inode table            ----------------------------------------" +
		strings.Repeat("\b", 40) + strings.Repeat("X", 20)
	var b bytes.Buffer
	m := parserMeter(&b)
	m.Step("growing")
	w := Resize2fs(m)
	feed(w, out, 9)
	feed(w, "X", 1)
	if got := lastLine(b.String()); got != "growing: pass 5: moving inode table (52%)" {
		t.Fatalf("%q", got)
	}
}

func TestMke2fs(t *testing.T) {
	// mke2fs 1.47.0 (recorded here): the counts are rubbed out with
	// backspaces and "done" written over them.
	out := "mke2fs 1.47.0 (5-Feb-2023)\nCreating filesystem with 65536 1k blocks and 16384 inodes\n" +
		"Filesystem UUID: 401ce58b-3b69-4aea-9c00-7f2718560fc6\nSuperblock backups stored on blocks: \n\t8193, 24577\n\n" +
		"Allocating group tables: 0/8\b\b\b   \b\b\bdone                            \n" +
		"Writing inode tables: 3/8"
	var b bytes.Buffer
	m := parserMeter(&b)
	m.Step("formatting")
	w := Mke2fs(m)
	feed(w, out, 6)
	w.Write(nil)
	if got := lastLine(b.String()); got != "formatting: writing inode tables 3/8 (37%)" {
		t.Fatalf("%q", got)
	}
	for _, s := range []string{"filesystem uuid", "superblock"} {
		if strings.Contains(strings.ToLower(b.String()), s) {
			t.Fatalf("showed %q: %q", s, b.String())
		}
	}
	feed(w, "\b\b\b   \b\b\bdone\nCreating journal (4096 blocks): ", 4)
	if got := lastLine(b.String()); got != "formatting: creating journal (4096 blocks)" {
		t.Fatalf("%q", got)
	}
}
