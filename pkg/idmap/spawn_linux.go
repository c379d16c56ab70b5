package idmap

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// UserNS returns an open user namespace with mapping m, for idmapped
// mounts; the caller closes it. The kernel makes a user namespace only
// with a process in it: this starts one that never runs a single
// instruction (runc's way, libcontainer/internal/userns): PTRACE_TRACEME
// stops it at its execve, its namespace is opened, and it is killed and
// reaped before UserNS returns. The file keeps the namespace.
//
// The traced child cannot start where this process is itself traced
// (strace -f): its PTRACE_TRACEME then fails and so does UserNS.
func UserNS(m *Mapping) (*os.File, error) {
	uid, gid := SysMaps(m)
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	// The binary itself: never a file another user can replace.
	p, err := os.StartProcess("/proc/self/exe", []string{"lxc-hook-userns"}, &os.ProcAttr{
		Files: []*os.File{null, null, null},
		Sys: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: uid,
			GidMappings: gid,
			Ptrace:      true,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("a user namespace with %s: %w", m, err)
	}
	defer func() {
		_ = p.Kill()
		_, _ = p.Wait()
	}()
	ns, err := os.Open("/proc/" + strconv.Itoa(p.Pid) + "/ns/user")
	if err != nil {
		return nil, fmt.Errorf("a user namespace with %s: %w", m, err)
	}
	return ns, nil
}
