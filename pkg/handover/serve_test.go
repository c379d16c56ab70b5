package handover

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary plays the server (ServeArg) and pre-mount (clientArg),
// as the hook binary does.
const clientArg = "handover-test-client"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case ServeArg:
			// argv: ServeArg --uid N RESULTFILE
			uid, _ := strconv.ParseUint(os.Args[3], 10, 32)
			res, err := Serve(uint32(uid), time.Now().Add(5*time.Second), func(string) {}, nil)
			out := ""
			if errors.Is(err, ErrAborted) {
				out = "aborted"
			} else if err != nil {
				out = "error: " + err.Error()
			} else {
				out = fmt.Sprintf("peer-err=%s took=%s ns=%s", res.PeerErr, res.PeerTook, res.PeerMountNS)
			}
			os.WriteFile(os.Args[len(os.Args)-1], []byte(out), 0o600)
			os.Exit(0)
		case clientArg:
			fd, conn, err := Receive(os.Args[2], 5*time.Second)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			unix.Close(fd)
			conn.Reply(errors.New("attaching the prepared root onto /x: what went wrong"), time.Millisecond)
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// A full handover as root: the server sends the fd to a peer in another
// mount namespace, and the peer's error line comes back to the server, which
// writes it to the LXC log in the hook; a peer in the host's mount
// namespace is turned away.
// testMaps is a container's usual mapping.
var testMaps = Maps{
	UID: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
	GID: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
}

// asContainerRoot runs cmd as the container's root of testMaps, in a
// mount namespace of its own or not.
func asContainerRoot(cmd *exec.Cmd, newNS bool) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: testMaps.UID, GidMappings: testMaps.GID,
		// As LXC runs its hooks: uid 0 inside, the host's 100000 outside.
		Credential: &syscall.Credential{Uid: 0, Gid: 0},
	}
	if newNS {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNS
	}
	return cmd
}

func TestHandoverCarriesPeerError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a peer in its own mount namespace)")
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // the container's root reaches the socket
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	result := filepath.Join(dir, "result")
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := Spawn(os.Args[0], dir, 100000, 100000, testMaps, nil, []string{result})
	if err != nil {
		t.Fatal(err)
	}
	defer p.UserNS.Close()
	if err := p.Send(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	// Host root, which the server's user namespace does not map: turned
	// away (it can connect: root passes the socket's 0600).
	if out, err := exec.Command(os.Args[0], clientArg, dir).CombinedOutput(); err == nil {
		t.Fatalf("host root got the root: %s", out)
	}
	// The container's root, but in the host's mount namespace: turned away.
	// The container's root cannot reach the test binary in go's 0700
	// build directory: a copy it can run.
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(filepath.Dir(dir), "client")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := asContainerRoot(exec.Command(exe, clientArg, dir), false).CombinedOutput(); err == nil || !strings.Contains(string(out), "sent no root") {
		t.Fatalf("a peer in the host's mount namespace got the root, or did not reach the server: %v %s", err, out)
	}
	client := asContainerRoot(exec.Command(exe, clientArg, dir), true)
	if out, err := client.CombinedOutput(); err != nil {
		t.Fatalf("client: %v %s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	var got []byte
	for time.Now().Before(deadline) {
		if got, _ = os.ReadFile(result); len(got) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(string(got), "peer-err=attaching the prepared root onto /x: what went wrong") || !strings.Contains(string(got), "ns=mnt:[") {
		t.Fatalf("server result %q", got)
	}
}

// A pre-start that fails, or dies, before the root exists ends its server
// at once: Abort, or the control socket closing with the process.
func TestAbortEndsServer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown of the socket)")
	}
	dir := t.TempDir()
	result := filepath.Join(dir, "result")
	p, err := Spawn(os.Args[0], dir, 100000, 100000, testMaps, nil, []string{result})
	if err != nil {
		t.Fatal(err)
	}
	p.UserNS.Close()
	p.Abort()
	deadline := time.Now().Add(5 * time.Second)
	var got []byte
	for time.Now().Before(deadline) {
		if got, _ = os.ReadFile(result); len(got) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if string(got) != "aborted" {
		t.Fatalf("server result %q, want aborted", got)
	}
}

// The server runs in a user namespace with the container's maps, and that
// namespace is the one Spawn hands back for the idmapped layers; the
// server's --uid is the container's root as it sees it (0), and its
// credentials outside stay those of the host root that started it.
func TestServerCarriesUserNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a user namespace with a mapping)")
	}
	dir := t.TempDir()
	result := filepath.Join(dir, "result")
	p, err := Spawn(os.Args[0], dir, 100000, 100000, testMaps, nil, []string{result})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	defer p.UserNS.Close()
	b, err := os.ReadFile(filepath.Join(dir, PIDFile))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.Fields(string(b))[0]
	link, err := os.Readlink("/proc/" + pid + "/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(p.UserNS.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("user:[%d]", st.Ino); link != want {
		t.Fatalf("server's user namespace %s, handed back %s", link, want)
	}
	self, _ := os.Readlink("/proc/self/ns/user")
	if link == self {
		t.Fatal("the server runs in the host's user namespace")
	}
	m, _ := os.ReadFile("/proc/" + pid + "/uid_map")
	if f := strings.Fields(string(m)); len(f) != 3 || f[0] != "0" || f[1] != "100000" || f[2] != "65536" {
		t.Fatalf("server uid_map %q", m)
	}
	cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
	if !strings.Contains(string(cmdline), "\x00--uid\x000\x00") {
		t.Fatalf("server argv %q: want --uid 0 (the container's root as it sees it)", cmdline)
	}
	status, _ := os.ReadFile("/proc/" + pid + "/status")
	if !strings.Contains(string(status), "\nUid:\t0\t0\t0\t0\n") {
		t.Fatalf("server's host credentials changed: %s", status)
	}
}
