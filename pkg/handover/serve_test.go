package handover

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
			res, err := Serve(0, time.Now().Add(5*time.Second), func(string) {}, nil)
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
func TestHandoverCarriesPeerError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a peer in its own mount namespace)")
	}
	dir := t.TempDir()
	result := filepath.Join(dir, "result")
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := Spawn(os.Args[0], dir, 0, 0, []string{result})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Send(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	// Same mount namespace as the server: turned away, so it sees no root.
	if out, err := exec.Command(os.Args[0], clientArg, dir).CombinedOutput(); err == nil {
		t.Fatalf("a peer in the host's mount namespace got the root: %s", out)
	}
	client := exec.Command(os.Args[0], clientArg, dir)
	client.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
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
	p, err := Spawn(os.Args[0], dir, 0, 0, []string{result})
	if err != nil {
		t.Fatal(err)
	}
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
