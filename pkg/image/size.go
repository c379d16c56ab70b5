// Package image owns the writable layer's ext4 image file: its size, its
// creation (sparse or preallocated, formatted under a temporary name and
// renamed into place), its checks (superblock magic, e2fsck in preen mode)
// and its growth (file, then resize2fs). It never formats, truncates,
// shrinks or deletes an existing image.
//
// An image is opened once, by a checked walk (package trust: root's alone,
// with every directory above it, one name only), and used through that
// file from then on: e2fsprogs get it as /proc/self/fd/3 (ToolPath), never
// its name, so nothing swapped in between is formatted, checked or grown.
package image

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Bounds of --size. Below MinSize ext4 with a journal leaves next to
// nothing for the container; MaxSize is ext4's limit with 4 KiB blocks and
// no 64bit feature, far above any container layer.
const (
	MinSize = 16 << 20
	MaxSize = 16 << 40
)

// ParseSize reads a size with a binary suffix: K, M, G or T (also KiB,
// MiB, GiB, TiB; any case), or a plain number of bytes. Sizes are rounded
// up to a whole 4 KiB block.
func ParseSize(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("--size is empty: give a size such as 2G or 512M")
	}
	// "96 M" would be written back to a hook line as two words; a size is
	// one word.
	if strings.ContainsAny(s, " \t\n\r\v\f") {
		return 0, fmt.Errorf("--size %q has a blank inside: write it as one word, e.g. %s", orig, strings.Join(strings.Fields(s), ""))
	}
	mult := int64(1)
	upper := strings.ToUpper(s)
	for _, suf := range []struct {
		s string
		m int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(upper, suf.s) {
			mult = suf.m
			s = s[:len(s)-len(suf.s)]
			break
		}
	}
	if s == "" || strings.ContainsAny(s, "+-") && !strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("--size %q is not a size: use a number with K, M, G or T (binary units), e.g. 2G", orig)
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("--size %q is negative", orig)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("--size %q is too large (at most %s)", orig, Human(MaxSize))
		}
		return 0, fmt.Errorf("--size %q is not a size: use a whole number with K, M, G or T (binary units), e.g. 2G", orig)
	}
	if n == 0 {
		return 0, fmt.Errorf("--size %q is zero", orig)
	}
	if n > uint64(math.MaxInt64)/uint64(mult) {
		return 0, fmt.Errorf("--size %q is too large (at most %s)", orig, Human(MaxSize))
	}
	size := int64(n) * mult
	if size > MaxSize {
		return 0, fmt.Errorf("--size %q is too large (at most %s)", orig, Human(MaxSize))
	}
	if size < MinSize {
		return 0, fmt.Errorf("--size %q is too small: an ext4 layer needs at least %s", orig, Human(MinSize))
	}
	const block = 4096
	if r := size % block; r != 0 {
		size += block - r
	}
	return size, nil
}

// Human prints a size the way --size takes it, exactly when it can.
func Human(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.m && n%u.m == 0 {
			return strconv.FormatInt(n/u.m, 10) + u.s
		}
	}
	if n >= 1<<20 {
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + "M"
	}
	return strconv.FormatInt(n, 10)
}
