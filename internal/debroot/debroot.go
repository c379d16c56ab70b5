// Package debroot builds, once per machine, the Debian bookworm root with
// systemd that the systemd test (test/systemd_test.go) and the formats
// benchmark (bench, -only formats) boot: debootstrap takes minutes, so the
// root is kept in a cache directory outside their scratch directories.
package debroot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Name is the root's directory in the cache.
const Name = "bookworm-minbase-systemd"

// Build returns cache/Name, a Debian bookworm root (debootstrap
// --variant=minbase --include=systemd-sysv from mirror), building it when
// it is missing: into a temporary directory renamed when complete, so an
// interrupted build is never taken for a root, under a lock in cache so
// that runs at the same time build it once (waiting at most wait).
// debootstrap's output goes to out (nil: kept for the error). built says
// whether this call ran debootstrap.
func Build(cache, mirror string, wait time.Duration, out io.Writer) (root string, built bool, err error) {
	root = filepath.Join(cache, Name)
	if complete(root) {
		return root, false, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", false, err
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", false, err
	}
	defer lock.Close()
	for deadline := time.Now().Add(wait); unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil; {
		if time.Now().After(deadline) {
			return "", false, fmt.Errorf("%s stayed locked for %s (another run's debootstrap?)", lock.Name(), wait)
		}
		time.Sleep(time.Second)
	}
	if complete(root) {
		return root, false, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", false, errors.New("debootstrap is not installed (apt-get install debootstrap; scripts/deps.sh installs it)")
	}
	if mirror == "" {
		return "", false, errors.New("no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list to debootstrap from")
	}
	tmp := root + ".partial"
	// debootstrap mounts /proc and /sys inside its target: an interrupted
	// build may have left them. Never RemoveAll across a mount.
	for _, mp := range mountsUnder(tmp) {
		unix.Unmount(mp, unix.MNT_DETACH)
	}
	if m := mountsUnder(tmp); len(m) > 0 {
		return "", false, fmt.Errorf("cannot clear %s: still mounted %v", tmp, m)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return "", false, err
	}
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include=systemd-sysv", "bookworm", tmp, mirror)
	var kept strings.Builder
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	} else {
		cmd.Stdout, cmd.Stderr = &kept, &kept
	}
	if err := cmd.Run(); err != nil {
		return "", false, fmt.Errorf("debootstrap bookworm from %s: %v\n%s", mirror, err, lastLines(kept.String(), 20))
	}
	if err := os.Rename(tmp, root); err != nil {
		return "", false, err
	}
	return root, true, nil
}

func complete(root string) bool {
	fi, err := os.Stat(filepath.Join(root, "usr", "lib", "systemd", "systemd"))
	return err == nil && fi.Mode().IsRegular()
}

// Mirror is the Debian mirror this machine's apt uses: the first URI of
// debian.sources that is not the security archive, else the first
// bookworm "deb" line of sources.list; "" when there is none.
func Mirror() string {
	if f, err := os.Open("/etc/apt/sources.list.d/debian.sources"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "URIs:"); ok {
				for _, u := range strings.Fields(v) {
					if !strings.Contains(u, "security") {
						return u
					}
				}
			}
		}
	}
	if f, err := os.Open("/etc/apt/sources.list"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 3 && fs[0] == "deb" && fs[2] == "bookworm" {
				return fs[1]
			}
		}
	}
	return ""
}

// mountsUnder lists the mounts below dir.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
