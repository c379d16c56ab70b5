package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ctrl-C during "template FILE --from TARBALL" (SIGINT to the process
// group) fails the build and removes its hidden temporary file and
// staging directory; FILE is not written. The command is held (SIGSTOP)
// once its temporary file exists, the group gets SIGINT, and it goes on.
func TestTemplateInterrupted(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tarball := filepath.Join(dir, "root.tar")
	if out, err := exec.Command("tar", "-C", tplDir, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	file := filepath.Join(outDir, "t.squashfs")
	cmd := exec.Command(filepath.Join(binDir, "lxc-hook-loopimg"), "template", file, "--from", tarball)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LXC_HOOKS_TEST_KILLPOINT=template:after-temp/stop"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, as a terminal's job
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !stopped; {
		select {
		case err := <-exited:
			t.Fatalf("template ended before its stop point: %v %s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
		stopped = processStopped(cmd.Process.Pid)
	}
	if !stopped {
		cmd.Process.Kill()
		t.Fatal("template never reached its stop point")
	}
	if ents, _ := os.ReadDir(outDir); len(ents) == 0 {
		t.Fatal("no temporary file at the stop point (the test does not test the cleanup)")
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
	err := <-exited
	if err == nil {
		t.Fatalf("interrupted template succeeded: %s", out.String())
	}
	t.Logf("%v: %s", err, strings.TrimSpace(out.String()))
	if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("interrupted template left %v in %s", names, outDir)
	}
	if !strings.Contains(out.String(), "interrupted") {
		t.Fatalf("the failure does not say it was interrupted: %s", out.String())
	}
}

// Ctrl-C during "copy SRC DST" fails the copy and removes DST's partial
// directory: held after the image was copied (SIGSTOP), the process group
// gets SIGINT, then goes on.
func TestCopyInterrupted(t *testing.T) {
	requireEnv(t)
	hook := "lxc-hook-loopimg"
	c := initCtr(t, hook, "--size", "64M")
	c.mustStart()
	c.stop(false)
	dst := filepath.Join(c.lxcpath, c.name+"-copy")
	cmd := exec.Command(filepath.Join(binDir, hook), "copy", c.name, c.name+"-copy", "-P", c.lxcpath)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LXC_HOOKS_TEST_KILLPOINT=copy:after-image-copy/stop"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case err := <-exited:
			t.Fatalf("copy ended before its stop point: %v %s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && len(b) > i+2 && b[i+2] == 'T' {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("copy never reached its stop point")
		}
	}
	if !exists(filepath.Join(dst, "layer.img")) {
		t.Fatal("no partial copy at the stop point (the test does not test the cleanup)")
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
	if err := <-exited; err == nil || !strings.Contains(out.String(), "interrupted") {
		t.Fatalf("interrupted copy: %v %s", err, out.String())
	}
	if exists(dst) {
		t.Fatalf("interrupted copy left %s", dst)
	}
	c.mustStart() // SRC untouched, its image not left locked
	c.stop(false)
	assertNoLoops(t, workRoot, "after the interrupted copy")
}

// processStopped reports whether pid is stopped (state T in /proc/PID/stat,
// read after the command name, which may hold spaces and parentheses): a
// test-only kill point "POINT/stop" stops the process there.
func processStopped(pid int) bool {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && len(b) > i+2 && b[i+2] == 'T'
}
