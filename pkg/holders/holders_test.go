package holders

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestParseNSLink(t *testing.T) {
	if n, err := parseNSLink("mnt:[4026532301]"); err != nil || n != 4026532301 {
		t.Fatalf("%d %v", n, err)
	}
	if _, err := parseNSLink("net:[1]"); err == nil {
		t.Fatal("net namespace accepted as mnt")
	}
}

func TestKillRefusesUnprovenIdentity(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	p := describe(cmd.Process.Pid)
	stale := p
	stale.Start++ // another process that had this PID
	if err := Kill(stale); err == nil {
		t.Fatal("killed a process whose start time differs")
	}
	if err := Kill(Process{PID: 1, Start: 1}); err == nil {
		t.Fatal("pid 1 accepted")
	}
	if err := Kill(p); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("sleep was not killed")
	}
}

func TestInMountNSIDFindsAProcess(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	id, err := MountNSID("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/mnt")
	if err != nil {
		t.Skip("no mount namespace ids on this kernel:", err)
	}
	found := false
	for _, p := range InMountNSID(id) {
		if p.PID == cmd.Process.Pid {
			found = strings.HasPrefix(p.Command, "sleep 30") && p.Start != 0
		}
	}
	if !found {
		t.Fatal("sleep not listed in its own mount namespace")
	}
	if ps := InMountNSID(id + 1<<40); len(ps) != 0 {
		t.Fatalf("an unknown namespace id has processes: %v", ps)
	}
}

// A process holding a file of a mount is found by the mount's unique id,
// whatever namespace it runs in.
func TestWithFilesOn(t *testing.T) {
	dir := t.TempDir()
	f, _ := os.Create(dir + "/held")
	id, _, err := MountID(dir)
	if err != nil {
		t.Skip("no unique mount ids here (Linux 6.8+):", err)
	}
	cmd := exec.Command("sleep", "30")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	f.Close()
	found := false
	for _, p := range WithFilesOn([]uint64{id}, 0) {
		found = found || p.PID == cmd.Process.Pid
	}
	if !found {
		t.Fatal("the holder of a file on the mount was not found")
	}
}

func TestWithFileOpen(t *testing.T) {
	f, _ := os.CreateTemp(t.TempDir(), "held")
	cmd := exec.Command("sleep", "30")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	ps := WithFileOpen(f.Name())
	if len(ps) != 1 || ps[0].PID != cmd.Process.Pid {
		t.Fatalf("got %v", ps)
	}
}

// This process's own mount namespace has a process in it: this one.
func TestLiveMountNSIDsHasOwn(t *testing.T) {
	own, err := MountNSID("/proc/self/ns/mnt")
	if err != nil {
		t.Skipf("no NS_GET_MNTNS_ID here: %v", err)
	}
	if !LiveMountNSIDs()[own] {
		t.Fatalf("own mount namespace %d not among the live ones", own)
	}
}
