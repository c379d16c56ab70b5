package clone

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A sparse file with data at both ends and in the middle: the copy has the
// same bytes and no more blocks than the source, and the holes stay holes.
func TestImageSparse(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.img"), filepath.Join(dir, "dst.img")
	f, _ := os.Create(src)
	for _, off := range []int64{0, 50 << 20, 128<<20 - 4096} {
		f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), off)
	}
	f.Truncate(128 << 20)
	f.Close()
	var calls int
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := Image(in, dst, func(done, total int64) { calls++ }); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("the copy differs")
	}
	var ss, ds unix.Stat_t
	unix.Stat(src, &ss)
	unix.Stat(dst, &ds)
	if ds.Size != ss.Size || ds.Blocks > ss.Blocks+64 {
		t.Fatalf("copy %d bytes in %d blocks, source %d in %d", ds.Size, ds.Blocks, ss.Size, ss.Blocks)
	}
	if calls == 0 {
		t.Fatal("no progress reported")
	}
	if _, err := Image(in, dst, nil); err == nil {
		t.Fatal("an existing destination was overwritten")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*")); len(m) != 0 {
		t.Fatalf("temporary files left: %v", m)
	}
}

// An overlayfs upper with a whiteout, an opaque directory, a redirected
// (renamed) directory, a hardlink, a hole, a setuid file, a numeric owner
// and an old mtime: Tree keeps each.
func TestTreeKeepsOverlayUpper(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: overlayfs, trusted.* xattrs, mknod")
	}
	d := t.TempDir()
	l, u, w, m := filepath.Join(d, "l"), filepath.Join(d, "u"), filepath.Join(d, "w"), filepath.Join(d, "m")
	for _, p := range []string{l + "/d1", l + "/d2", u, w, m} {
		os.MkdirAll(p, 0o755)
	}
	os.WriteFile(l+"/d1/f", []byte("a"), 0o644)
	os.WriteFile(l+"/d2/g", []byte("b"), 0o644)
	os.WriteFile(l+"/gone", []byte("c"), 0o644)
	if err := unix.Mount("ov", m, "overlay", 0, "lowerdir="+l+",upperdir="+u+",workdir="+w+",redirect_dir=on"); err != nil {
		t.Skipf("overlayfs: %v", err)
	}
	script := "rm " + m + "/gone && rm -r " + m + "/d1 && mkdir " + m + "/d1 && echo n > " + m + "/d1/n && mv " + m + "/d2 " + m + "/d3" +
		" && echo h > " + m + "/h1 && ln " + m + "/h1 " + m + "/h2 && chmod 4755 " + m + "/h1 && chown 1234:5678 " + m + "/d1/n" +
		" && truncate -s 64M " + m + "/sparse && touch -d 2001-02-03 " + m + "/h1"
	out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput()
	unix.Unmount(m, 0)
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	dst := filepath.Join(d, "copy")
	if err := Tree(u, dst); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if unix.Lstat(dst+"/gone", &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatal("whiteout not kept")
	}
	buf := make([]byte, 8)
	if n, _ := unix.Lgetxattr(dst+"/d1", "trusted.overlay.opaque", buf); string(buf[:n]) != "y" {
		t.Fatal("opaque xattr not kept")
	}
	if n, _ := unix.Lgetxattr(dst+"/d3", "trusted.overlay.redirect", buf); string(buf[:n]) != "d2" {
		t.Fatal("redirect xattr not kept")
	}
	var h1, h2 unix.Stat_t
	unix.Lstat(dst+"/h1", &h1)
	unix.Lstat(dst+"/h2", &h2)
	if h1.Ino != h2.Ino || h1.Mode&unix.S_ISUID == 0 || h1.Mtim.Sec != 981158400 {
		t.Fatalf("hardlink/setuid/mtime not kept: %+v", h1)
	}
	unix.Lstat(dst+"/d1/n", &st)
	if st.Uid != 1234 || st.Gid != 5678 {
		t.Fatal("numeric owner not kept")
	}
	unix.Lstat(dst+"/sparse", &st)
	if st.Size != 64<<20 || st.Blocks > 8 {
		t.Fatalf("sparse file: %d bytes in %d blocks", st.Size, st.Blocks)
	}
	if err := Tree(u, dst); err == nil {
		t.Fatal("an existing destination was overwritten")
	}
}

// A copy whose context is done stops, says why, and leaves no file.
func TestImageContextCancelled(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.img"), filepath.Join(dir, "dst.img")
	f, _ := os.Create(src)
	f.WriteAt(bytes.Repeat([]byte{0xa5}, 1<<20), 0)
	f.Close()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	reflinked, err := ImageContext(ctx, in, dst, nil)
	if reflinked {
		t.Skip("the filesystem reflinks: nothing to stop")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled copy: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*dst*")); len(m) != 0 {
		t.Fatalf("left %v", m)
	}
}
