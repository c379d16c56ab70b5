package image

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"64M": 64 << 20, "64m": 64 << 20, "2G": 2 << 30, "2GiB": 2 << 30, "1T": 1 << 40,
		"16384K": 16 << 20, "16777216": 16 << 20, "16777217": 16<<20 + 4096, " 512M ": 512 << 20,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                      "empty",
		"abc":                   "not a size",
		"1.5G":                  "not a size",
		"0":                     "zero",
		"0G":                    "zero",
		"-1G":                   "negative",
		"1M":                    "too small",
		"99999999999999999999G": "too large",
		"17T":                   "too large",
		"9223372036854775807T":  "too large",
		"12X":                   "not a size",
		"G":                     "not a size",
		"96 M":                  "blank inside",
		"9 6M":                  "blank inside",
		"96\tM":                 "blank inside",
	} {
		_, err := ParseSize(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSize(%q): want %q, got %v", in, want, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--size") {
			t.Errorf("ParseSize(%q): error does not name --size: %v", in, err)
		}
	}
}

func TestHuman(t *testing.T) {
	for n, want := range map[int64]string{64 << 20: "64M", 2 << 30: "2G", 1536 << 20: "1536M", 100: "100"} {
		if got := Human(n); got != want {
			t.Errorf("Human(%d) = %q, want %q", n, got, want)
		}
	}
}

func superblock(mod func(b []byte)) []byte {
	img := make([]byte, 4096)
	b := img[1024:2048]
	le := binary.LittleEndian
	le.PutUint16(b[0x38:], 0xEF53)
	le.PutUint32(b[0x18:], 2) // 4 KiB blocks
	le.PutUint32(b[0x04:], 16384)
	le.PutUint16(b[0x3A:], 1) // clean
	le.PutUint16(b[0x36:], 0xFFFF)
	if mod != nil {
		mod(b)
	}
	return img
}

func TestSuperblock(t *testing.T) {
	sb, err := ReadSuperblock(bytes.NewReader(superblock(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if sb.Size() != 64<<20 || sb.NeedsCheck(time.Now()) != "" {
		t.Fatalf("clean 64M: size %d, needs %q", sb.Size(), sb.NeedsCheck(time.Now()))
	}
	le := binary.LittleEndian
	cases := map[string]func(b []byte){
		"journal needs recovery": func(b []byte) { le.PutUint32(b[0x60:], 0x4) },
		"recorded errors":        func(b []byte) { le.PutUint16(b[0x3A:], 3) },
		"not unmounted cleanly":  func(b []byte) { le.PutUint16(b[0x3A:], 0) },
		"mounted 20 times":       func(b []byte) { le.PutUint16(b[0x36:], 20); le.PutUint16(b[0x34:], 20) },
		"check interval":         func(b []byte) { le.PutUint32(b[0x44:], 3600); le.PutUint32(b[0x40:], 1000) },
	}
	for want, mod := range cases {
		sb, err := ReadSuperblock(bytes.NewReader(superblock(mod)))
		if err != nil {
			t.Fatal(err)
		}
		if got := sb.NeedsCheck(time.Now()); !strings.Contains(got, want) {
			t.Errorf("want %q, got %q", want, got)
		}
	}
	if sb.HasOrphans() || sb.NeedsRecovery() {
		t.Fatal("a clean superblock with orphans or a journal to replay")
	}
	for name, mod := range map[string]func(b []byte){
		"orphan list": func(b []byte) { le.PutUint32(b[0xE8:], 18) },
		"orphan file": func(b []byte) { le.PutUint32(b[0x64:], 0x10000) },
	} {
		if sb, _ := ReadSuperblock(bytes.NewReader(superblock(mod))); !sb.HasOrphans() {
			t.Errorf("%s: no orphans seen", name)
		}
	}
	if sb, _ := ReadSuperblock(bytes.NewReader(superblock(cases["journal needs recovery"]))); !sb.NeedsRecovery() {
		t.Error("a journal to replay not seen")
	}
	if _, err := ReadSuperblock(bytes.NewReader(make([]byte, 4096))); err != ErrNotExt {
		t.Fatalf("zeros: %v", err)
	}
	if _, err := ReadSuperblock(bytes.NewReader([]byte("short"))); err != ErrNotExt {
		t.Fatalf("short file: %v", err)
	}
}

// A tool's progress lines are left out of the words a message quotes.
func TestDropProgressLines(t *testing.T) {
	out := "1 0 16 /proc/self/fd/3\r\n1 16 16 /proc/self/fd/3\r\n/proc/self/fd/3: 11/4096 files (0.0% non-contiguous)\r\n" +
		"Begin pass 5 (max = 1)\r\nMoving inode table  ----\b\b\b\bXXXX\r\nresize2fs: No space left on device\r\n"
	got := dropProgressLines(out)
	if got != "/proc/self/fd/3: 11/4096 files (0.0% non-contiguous)\nresize2fs: No space left on device\n" {
		t.Fatalf("%q", got)
	}
}
