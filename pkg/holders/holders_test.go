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

func TestInMountNSFindsAProcess(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	ino, err := MountNSInode(strconv.Itoa(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range InMountNS(ino) {
		if p.PID == cmd.Process.Pid {
			found = strings.HasPrefix(p.Command, "sleep 30")
		}
	}
	if !found {
		t.Fatal("sleep not listed in its own mount namespace")
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
