package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// identityInit is the init of the identity template: as a distribution's
// init does, it sets the hostname from /etc/hostname, and, as systemd does
// with an empty /etc/machine-id, makes a machine-id and keeps it.
const identityInit = `#!/bin/sh
[ -s /etc/hostname ] && hostname -F /etc/hostname
if [ ! -s /etc/machine-id ]; then id=$(cat /proc/sys/kernel/random/uuid); echo ${id//-/} > /etc/machine-id; fi
trap 'sync; exit 0' USR2 PWR TERM
while :; do sleep 3600 & wait $!; done
`

// templateMachineID is the one machine's id the template carries, as a
// root filesystem made by debootstrap or taken from a running machine does.
const templateMachineID = "0123456789abcdef0123456789abcdef"

// identityTemplate builds, with mksquashfs (not the template command,
// which would empty the machine-id), the busybox template with the
// builder's hostname, hosts line and machine-id.
func identityTemplate(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "root")
	if out, err := exec.Command("cp", "-a", tplDir+"/.", root).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	for _, c := range []string{"hostname", "ln"} {
		os.Symlink("busybox", filepath.Join(root, "bin", c))
	}
	files := map[string]string{
		"sbin/init":      identityInit,
		"etc/hostname":   "builder\n",
		"etc/hosts":      "127.0.0.1\tlocalhost\n127.0.1.1\tbuilder.example.org builder\n",
		"etc/machine-id": templateMachineID + "\n",
	}
	for p, content := range files {
		mode := os.FileMode(0o644)
		if p == "sbin/init" {
			mode = 0o755
		}
		os.Remove(filepath.Join(root, p))
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	sq := filepath.Join(dir, "identity.squashfs")
	if out, err := exec.Command("mksquashfs", root, sq, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v %s", err, out)
	}
	return sq
}

// identity is what a container's user sees of its identity.
type identity struct{ hostname, etcHostname, hosts, machineID string }

func identityOf(c *ctr) identity {
	c.t.Helper()
	out := strings.Split(c.mustSh("hostname; cat /etc/hostname; grep '^127.0.1.1' /etc/hosts; cat /etc/machine-id"), "\n")
	if len(out) < 4 {
		c.t.Fatalf("%s: %q", c.name, out)
	}
	return identity{out[0], out[1], out[2], out[3]}
}

// checkOwnIdentity: the container's name is its hostname (as the
// template's init sets it from /etc/hostname) and on its 127.0.1.1 line,
// and it made a machine-id of its own, not the template's.
func checkOwnIdentity(t *testing.T, c *ctr, id identity) {
	t.Helper()
	if id.hostname != c.name || id.etcHostname != c.name || id.hosts != "127.0.1.1\t"+c.name {
		t.Fatalf("%s: hostname %q, /etc/hostname %q, hosts %q", c.name, id.hostname, id.etcHostname, id.hosts)
	}
	if len(id.machineID) != 32 || id.machineID == templateMachineID {
		t.Fatalf("%s: machine-id %q", c.name, id.machineID)
	}
}

// Each container its own identity: two containers of one template (one
// overlay, one loopimg) get their names as hostnames and machine-ids of
// their own; a restart keeps both, and a hostname the container chose
// itself; every copy (copy, lxc-copy) gets its own name and machine-id,
// a rename (lxc-copy -R) its new name and the same machine-id; an
// unprivileged container's files stay its root's. A symlink the container
// put at /etc/hostname is never followed when a copy is renamed: the host
// file it points to stays as it was. The template is unchanged.
func TestEachContainerItsOwnIdentity(t *testing.T) {
	requireEnv(t)
	dir := testDir(t)
	tpl := identityTemplate(t, dir)
	tplSum := fileSHA(t, tpl)
	lxcpath := filepath.Join(workRoot, "lxc")

	a := initAt(t, "lxc-hook-overlay", lxcpath, tpl)
	b := initAt(t, "lxc-hook-loopimg", lxcpath, tpl, "--size", "32M")
	a.mustStart()
	b.mustStart()
	ida, idb := identityOf(a), identityOf(b)
	checkOwnIdentity(t, a, ida)
	checkOwnIdentity(t, b, idb)
	if ida.machineID == idb.machineID {
		t.Fatalf("two containers of one template share the machine-id %s", ida.machineID)
	}

	// A restart changes nothing, and the container's own choice stays.
	a.mustSh("echo chosen-by-a > /etc/hostname && sync")
	a.stop(false)
	a.mustStart()
	if id := identityOf(a); id.machineID != ida.machineID || id.hostname != "chosen-by-a" {
		t.Fatalf("after a restart: %+v (before %+v)", id, ida)
	}
	a.stop(false)

	// Copies: their own names and machine-ids, as lxc-copy gives the copy
	// its name even where the source chose another.
	byCopy := other(a, a.name+"-copy")
	if out, err := admin(t, "lxc-hook-overlay", "copy", a.name, byCopy.name, "-P", lxcpath); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	byLXC := other(a, a.name+"-lxccopy")
	if out, err := a.lxc("lxc-copy", "-N", byLXC.name); err != nil {
		t.Fatalf("lxc-copy: %v %s", err, out)
	}
	seen := map[string]string{ida.machineID: a.name, idb.machineID: b.name}
	for _, d := range []*ctr{byCopy, byLXC} {
		d.mustStart()
		id := identityOf(d)
		checkOwnIdentity(t, d, id)
		if other, ok := seen[id.machineID]; ok {
			t.Fatalf("%s has the machine-id of %s", d.name, other)
		}
		seen[id.machineID] = d.name
		d.stop(false)
	}

	// A rename is the same machine under a new name.
	renamed := other(a, a.name+"-renamed")
	before := identityOfStopped(t, byLXC)
	if out, err := byLXC.lxc("lxc-copy", "-R", "-N", renamed.name); err != nil {
		t.Fatalf("lxc-copy -R: %v %s", err, out)
	}
	renamed.mustStart()
	if id := identityOf(renamed); id.hostname != renamed.name || id.machineID != before.machineID {
		t.Fatalf("renamed: %+v, before %+v", id, before)
	}
	renamed.stop(false)

	// A symlink at /etc/hostname, to a host file: a copy's start leaves
	// the link, and the file, alone.
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("host file\n"), 0o644)
	b.mustSh("rm /etc/hostname && ln -s " + victim + " /etc/hostname && sync")
	b.stop(false)
	bc := other(b, b.name+"-copy")
	if out, err := admin(t, "lxc-hook-loopimg", "copy", b.name, bc.name, "-P", lxcpath); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	bc.mustStart()
	if got, _ := os.ReadFile(victim); string(got) != "host file\n" {
		t.Fatalf("the host file behind the container's symlink was written: %q", got)
	}
	if !strings.Contains(bc.log(), "/etc/hostname in the container was left as it is") {
		t.Fatalf("no warning about the symlink in %s's log", bc.name)
	}
	if id := bc.mustSh("cat /etc/machine-id"); strings.TrimSpace(id) == idb.machineID {
		t.Fatalf("the copy kept its source's machine-id")
	}
	bc.stop(false)

	// Unprivileged: the same, and /etc/hostname stays the container root's.
	u := initUnpriv(t, "lxc-hook-loopimg", tpl, "--size", "32M")
	u.mustStart()
	checkOwnIdentity(t, u, identityOf(u))
	if got := u.mustSh("stat -c %u:%g /etc/hostname /etc/hosts /etc/machine-id"); got != "0:0\n0:0\n0:0\n" {
		t.Fatalf("owners inside the unprivileged container: %q", got)
	}
	u.stop(false)

	if fileSHA(t, tpl) != tplSum {
		t.Fatal("the template changed")
	}
	assertNoLoops(t, workRoot, "after the identity checks")
}

// identityOfStopped starts c for a look and stops it again.
func identityOfStopped(t *testing.T, c *ctr) identity {
	t.Helper()
	c.mustStart()
	id := identityOf(c)
	c.stop(false)
	return id
}
