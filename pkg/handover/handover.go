// Package handover passes a detached mount (the layered root, built by host
// root in lxc.hook.pre-start) to lxc.hook.pre-mount of an unprivileged
// container, which runs as the container's root in the container's mount
// namespace and attaches it onto the rootfs directory.
//
// pre-start cannot wait for pre-mount (LXC runs pre-mount after pre-start
// returned), so it leaves a small server behind: the hook binary again,
// started while the layers mount, in its own session, with its stdio on
// /dev/null (LXC reads a hook's output until EOF). It holds the listening
// socket, gets the root over a control socket (and exits if pre-start
// fails or dies first), serves one peer whose SO_PEERCRED uid is the
// container's mapped root and who sends an fd of its mount namespace, one
// other than the host's, sends the fd with SCM_RIGHTS, reads back whether the attach
// worked, and exits; or exits at its deadline. Its fds go with it, so a
// server that is killed, or never served, leaves nothing mounted; post-stop
// ends one that is still there, identified by PID and start time.
package handover

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ServeArg is the hidden first argument that makes a hook binary the
// server.
const ServeArg = "__lxc-hooks-handover"

// Timeout bounds the server's life: LXC runs pre-mount right after
// pre-start, so a server unserved this long belongs to a start that failed.
const Timeout = 30 * time.Second

// Socket and PIDFile are the server's files in the container's runtime
// directory.
const (
	Socket  = "handover.sock"
	PIDFile = "handover.pid"
)

// Pending is a started server waiting for the root to serve.
type Pending struct {
	ctl int
	// UserNS is the server's user namespace (Spawn's maps), open: the
	// idmap for the layers' idmapped mounts. The caller closes it.
	UserNS *os.File
}

// Send gives the server the mount to serve; it keeps its own copy.
func (p *Pending) Send(mountFD int) error {
	defer unix.Close(p.ctl)
	if err := unix.Sendmsg(p.ctl, []byte("root"), unix.UnixRights(mountFD), nil, 0); err != nil {
		return fmt.Errorf("passing the root to the handover server: %w", err)
	}
	return nil
}

// Abort ends the server: there is no root to serve.
func (p *Pending) Abort() { unix.Close(p.ctl) }

// Maps is the user namespace a server runs in: the container's lxc.idmap.
type Maps struct{ UID, GID []syscall.SysProcIDMap }

// Spawn starts the server for the runtime directory dir, before the root
// exists (its start then overlaps building it): it listens on
// dir/handover.sock (owned by uid:gid, the container's mapped root, mode
// 0600), waits for the root from Pending.Send, and is given args after
// ServeArg. If this process dies first, the server sees its control socket
// close and exits. dir must be searchable by uid. The server's identity
// goes into dir/handover.pid.
//
// The server runs in a new user namespace with maps, which is also the
// idmap of the layers (Pending.UserNS): the kernel makes no user namespace
// without a process in it, and one process costs one start less than a
// placeholder next to the server. Its credentials keep the host uid
// (root, unmapped there, so without capabilities after exec): it opens no
// file by path but what root owns (its own socket and record files), and
// reads nothing in /proc of processes outside its namespace; so it gets
// the LXC log as an open file (logFile, its fd 5; nil for none) and the
// peer's mount namespace from the peer. SO_PEERCRED shows peers' uids
// through its maps: the container's root as the uid it maps to.
func Spawn(exe, dir string, uid, gid uint32, maps Maps, logFile *os.File, args []string) (*Pending, error) {
	Stop(dir) // an earlier start's, if it is still there
	sock := filepath.Join(dir, Socket)
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing the stale socket %s: %w", sock, err)
	}
	// Raw sockets, not package net: it would add a sixth to each binary.
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("handover socket: %w", err)
	}
	lf := os.NewFile(uintptr(lfd), "listener")
	defer lf.Close()
	if err := unix.Bind(lfd, &unix.SockaddrUnix{Name: sock}); err != nil {
		return nil, fmt.Errorf("handover socket %s: %w", sock, err)
	}
	// Owner and mode before listen: until then a connect is refused, so
	// no one gets in while the socket still has the umask's mode.
	if err := os.Chown(sock, int(uid), int(gid)); err != nil {
		return nil, fmt.Errorf("handover socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		return nil, fmt.Errorf("handover socket: %w", err)
	}
	if err := unix.Listen(lfd, 4); err != nil {
		return nil, fmt.Errorf("handover socket %s: %w", sock, err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("handover control socket: %w", err)
	}
	ctl := os.NewFile(uintptr(pair[1]), "control")
	defer ctl.Close()

	argv := append([]string{exe, ServeArg, "--uid", strconv.FormatUint(uint64(inside(maps.UID, uid)), 10)}, args...)
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	// Stdio on /dev/null: LXC reads a hook's output until EOF, so an
	// inherited pipe would hold the start. Its own session: LXC's signals to
	// the hook's process group do not reach it. os.StartProcess, not
	// os/exec: that package would add to every binary.
	files := []*os.File{null, null, null, lf, ctl} // fds 3 and 4
	if logFile != nil {
		files = append(files, logFile) // fd 5
	}
	p, err := os.StartProcess(exe, argv, &os.ProcAttr{
		Files: files,
		Sys: &syscall.SysProcAttr{
			Setsid:      true,
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: maps.UID,
			GidMappings: maps.GID,
			// The maps are written by this (root) process, so setgroups
			// need not be denied.
			GidMappingsEnableSetgroups: true,
		},
	})
	if err != nil {
		unix.Close(pair[0])
		return nil, fmt.Errorf("starting the handover server: %w", err)
	}
	pid := p.Pid
	st, _ := StartTime(pid)
	_ = p.Release() // not waited for: it outlives this hook
	fail := func(err error) (*Pending, error) {
		syscall.Kill(pid, syscall.SIGKILL)
		unix.Close(pair[0])
		return nil, err
	}
	id := fmt.Sprintf("%d %d\n", pid, st)
	if err := os.WriteFile(filepath.Join(dir, PIDFile), []byte(id), 0o600); err != nil {
		return fail(fmt.Errorf("recording the handover server: %w", err))
	}
	// It waits on the control socket, so it is there to open, and its
	// start time proves it is the process just started.
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/user")
	if err == nil {
		if now, serr := StartTime(pid); serr != nil || now != st {
			ns.Close()
			err = fmt.Errorf("it is gone")
		}
	}
	if err != nil {
		return fail(fmt.Errorf("opening the handover server's user namespace: %w", err))
	}
	return &Pending{ctl: pair[0], UserNS: ns}, nil
}

// inside is host id as the maps show it (itself without maps).
func inside(maps []syscall.SysProcIDMap, id uint32) uint32 {
	for _, r := range maps {
		if int64(id) >= int64(r.HostID) && int64(id) < int64(r.HostID)+int64(r.Size) {
			return uint32(r.ContainerID + int(id) - r.HostID)
		}
	}
	return id
}

// StartTime is field 22 of /proc/PID/stat: with the PID, it names a
// process; a PID alone names nothing once its process is gone.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 overall
}

// Stop ends the server recorded in dir if that very process still runs,
// and removes its files. It reports whether it had to kill one. Idempotent.
func Stop(dir string) (killed bool) {
	pf := filepath.Join(dir, PIDFile)
	if b, err := os.ReadFile(pf); err == nil {
		var pid int
		var st uint64
		if n, _ := fmt.Sscan(string(b), &pid, &st); n == 2 && pid > 1 {
			if now, err := StartTime(pid); err == nil && now == st {
				killed = syscall.Kill(pid, syscall.SIGKILL) == nil
			}
		}
	}
	os.Remove(filepath.Join(dir, Socket))
	os.Remove(pf)
	return killed
}

// Result is what one handover ended with.
type Result struct {
	PeerPID int
	// PeerMountNS is the peer's mount namespace ("mnt:[INODE]"), read
	// while the peer still waits for the root: the container's.
	PeerMountNS string
	// PeerErr is the error line pre-mount sent back ("" for success).
	PeerErr string
	// PeerTook is how long pre-mount took, as it said, for the debug line
	// it cannot write itself.
	PeerTook string
}

// ErrAborted means pre-start ended without a root to serve.
var ErrAborted = errors.New("pre-start sent no root")

// Serve is the server's work: its fds 3 and 4 are the listening socket
// and the control socket the root comes on. It returns when one
// authenticated peer was served, or at deadline. uid is the container's
// root as this process sees it (through its own user namespace). reject is
// told about peers that were turned away; onPeer about the one served,
// with an fd of its mount namespace.
func Serve(uid uint32, deadline time.Time, reject func(string), onPeer func(nsFD int)) (*Result, error) {
	const lfd, ctl = 3, 4
	defer unix.Close(lfd)
	setTimeout(ctl, time.Until(deadline))
	buf := make([]byte, 8)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(ctl, buf, oob, unix.MSG_CMSG_CLOEXEC)
	unix.Close(ctl)
	if err != nil {
		return nil, fmt.Errorf("waiting for the root from pre-start: %w", err)
	}
	mountFD := -1
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
		if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) == 1 && string(buf[:n]) == "root" {
			mountFD = fds[0]
		}
	}
	if mountFD < 0 {
		return nil, ErrAborted
	}
	defer unix.Close(mountFD)
	hostNS, err := mountNS("self")
	if err != nil {
		return nil, err
	}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("no lxc.hook.pre-mount came for the prepared root within %s; it is let go", Timeout)
		}
		fds := []unix.PollFd{{Fd: lfd, Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left/time.Millisecond)+1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, fmt.Errorf("handover poll: %w", err)
		}
		if fds[0].Revents == 0 {
			continue // the deadline check above ends it
		}
		cfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			return nil, fmt.Errorf("handover accept: %w", err)
		}
		res, why := serveOne(cfd, uid, hostNS, mountFD, deadline, onPeer)
		unix.Close(cfd)
		if res != nil {
			return res, nil
		}
		reject(why)
	}
}

func serveOne(cfd int, uid uint32, hostNS string, mountFD int, deadline time.Time, onPeer func(nsFD int)) (*Result, string) {
	cred, err := unix.GetsockoptUcred(cfd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return nil, fmt.Sprintf("SO_PEERCRED: %v", err)
	}
	if cred.Uid != uid {
		return nil, fmt.Sprintf("turned away pid %d: uid %d is not the container's root (%d)", cred.Pid, cred.Uid, uid)
	}
	setTimeout(cfd, time.Until(deadline))
	// The peer's mount namespace comes from the peer, as an fd of its
	// /proc/self/ns/mnt: the server, in a user namespace of its own, may
	// not read another's /proc/PID/ns. An fd proves the peer can reach
	// that namespace, as much as a /proc entry proved it ran there (both
	// a process can make for itself: the uid is the authentication).
	nsFD, err := recvFD(cfd, "mntns\n")
	if err != nil {
		return nil, fmt.Sprintf("turned away pid %d: %v", cred.Pid, err)
	}
	defer unix.Close(nsFD)
	peerNS, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(nsFD))
	if err != nil || !strings.HasPrefix(peerNS, "mnt:") || peerNS == hostNS {
		return nil, fmt.Sprintf("turned away pid %d: not in a container's mount namespace", cred.Pid)
	}
	if err := unix.Sendmsg(cfd, []byte("root\n"), unix.UnixRights(mountFD), nil, 0); err != nil {
		return nil, fmt.Sprintf("sending the root to pid %d: %v", cred.Pid, err)
	}
	// After the root is on its way: pre-mount, and the container's start,
	// need not wait for it (the fd keeps the namespace to look at).
	if onPeer != nil {
		onPeer(nsFD)
	}
	line, err := readLine(cfd)
	res := &Result{PeerPID: int(cred.Pid), PeerMountNS: peerNS}
	switch {
	case err != nil && line == "":
		res.PeerErr = fmt.Sprintf("pre-mount (pid %d) ended without saying whether it attached the root: %v", cred.Pid, err)
	case strings.HasPrefix(line, "ok"):
		res.PeerTook = strings.TrimSpace(strings.TrimPrefix(line, "ok"))
	default:
		res.PeerErr = strings.TrimSpace(strings.TrimPrefix(line, "error "))
	}
	return res, ""
}

// recvFD receives one message that must be want with exactly one fd.
func recvFD(fd int, want string) (int, error) {
	buf := make([]byte, 16)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, err
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for i := range msgs {
			if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if len(fds) == 1 && string(buf[:n]) == want {
		return fds[0], nil
	}
	for _, f := range fds {
		unix.Close(f)
	}
	return -1, fmt.Errorf("sent %q with %d fds, not %q with one", buf[:n], len(fds), want)
}

// setTimeout bounds every read and write on fd.
func setTimeout(fd int, d time.Duration) {
	if d < time.Millisecond {
		d = time.Millisecond
	}
	tv := unix.NsecToTimeval(d.Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
}

// readLine reads up to a newline or EOF (a line is at most 4 KiB).
func readLine(fd int) (string, error) {
	var b []byte
	buf := make([]byte, 512)
	for len(b) < 4096 {
		n, err := unix.Read(fd, buf)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return string(b), err
		}
		if n == 0 {
			return string(b), errors.New("EOF")
		}
		b = append(b, buf[:n]...)
		if i := strings.IndexByte(string(b), '\n'); i >= 0 {
			return string(b[:i]), nil
		}
	}
	return string(b), nil
}

func mountNS(pid string) (string, error) {
	return os.Readlink("/proc/" + pid + "/ns/mnt")
}

// Conn is pre-mount's end of a handover.
type Conn struct{ fd int }

// ErrNoServer means nothing serves the socket: pre-start did not run this
// hook (no lxc.hook.pre-start line), or its server is gone.
var ErrNoServer = errors.New("no handover server")

// Receive connects to the server in dir and returns the mount fd.
func Receive(dir string, timeout time.Duration) (int, *Conn, error) {
	sock := filepath.Join(dir, Socket)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("handover socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return -1, nil, fmt.Errorf("%w at %s: %v", ErrNoServer, sock, err)
		}
		return -1, nil, fmt.Errorf("handover socket %s: %w", sock, err)
	}
	setTimeout(fd, timeout)
	// Which mount namespace this is, for the server to check and record.
	ns, err := unix.Open("/proc/self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("opening /proc/self/ns/mnt: %w", err)
	}
	err = unix.Sendmsg(fd, []byte("mntns\n"), unix.UnixRights(ns), nil, 0)
	unix.Close(ns)
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("handover socket %s: sending this mount namespace: %w", sock, err)
	}
	root, err := recvFD(fd, "root\n")
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("handover socket %s: the server sent no root: %w", sock, err)
	}
	return root, &Conn{fd}, nil
}

// Reply tells the server whether the root was attached (err nil) or why
// not, so it lands in the container's LXC log, which pre-mount cannot
// open, and how long pre-mount took; and closes the connection.
func (c *Conn) Reply(err error, took time.Duration) {
	msg := "ok " + took.Round(10*time.Microsecond).String() + "\n"
	if err != nil {
		msg = "error " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
	}
	unix.Write(c.fd, []byte(msg))
	unix.Close(c.fd)
}
