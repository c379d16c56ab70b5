package identity

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
)

// RecordName is the file at the top of a writable layer, beside its marker,
// naming the container (config and hostname) whose identity the layer
// carries. It is copied with the layer, which is how a copy is recognised.
const RecordName = "lxc-hook-identity"

// MachineIDFiles hold a machine's identity. /var/lib/dbus/machine-id is
// D-Bus's older copy: systemd takes it when /etc/machine-id is empty
// (machine-id(5)), so a regular file there would hand every container the
// same id again. On Debian it is a symlink to /etc/machine-id, which is
// left alone.
var MachineIDFiles = []string{"etc/machine-id", "var/lib/dbus/machine-id"}

// Layer is one start's container and writable layer.
type Layer struct {
	// Root is the container's root as the hook mounted it (the union).
	Root string
	// Dir is the layer's top directory, which holds its marker: the record
	// goes there, out of the container's reach.
	Dir string
	// Upper is the union's upper directory: nothing in it means a new layer.
	Upper string
	// Config is the container's config (LXC_CONFIG_FILE), Name its name
	// (LXC_NAME).
	Config, Name string
}

// Record is what RecordName says.
type Record struct {
	Config   string
	Hostname string
	// Pending is set while a change is made ("new", "copy", "move",
	// "rename"), From the hostname before it: a start killed halfway is
	// done again in full by the next.
	Pending, From string
}

// change is what a start does to the layer.
type change struct {
	kind string // new, copy, move, rename
	// from is the hostname the container had ("" for a new layer).
	from string
	// machineID: empty the machine-id files (a new layer, or a copy).
	machineID bool
	// anyHostname: write /etc/hostname whatever it holds (a new layer,
	// a copy or a move, as lxc-copy does); else only where it still holds
	// from (the container may have chosen its own).
	anyHostname bool
}

// decide says what a start of the container (config, hostname) does with
// a layer whose record is rec (nil: none). adopt is a layer from before
// records: recorded as it is, not changed.
func decide(rec *Record, config, hostname string, upperEmpty func() (bool, error), exists func(string) bool) (ch *change, adopt bool, err error) {
	if rec != nil && rec.Pending != "" {
		return plan(rec.Pending, rec.From), false, nil
	}
	if rec == nil {
		empty, err := upperEmpty()
		if err != nil {
			return nil, false, err
		}
		if !empty {
			return nil, true, nil
		}
		return plan("new", ""), false, nil
	}
	if filepath.Clean(rec.Config) != filepath.Clean(config) {
		if rec.Config != "" && exists(rec.Config) {
			// The container it came from is still there: two machines.
			return plan("copy", rec.Hostname), false, nil
		}
		return plan("move", rec.Hostname), false, nil
	}
	if rec.Hostname != hostname {
		return plan("rename", rec.Hostname), false, nil
	}
	return nil, false, nil
}

func plan(kind, from string) *change {
	switch kind {
	case "new":
		return &change{kind: kind, machineID: true, anyHostname: true}
	case "copy":
		return &change{kind: kind, from: from, machineID: true, anyHostname: true}
	case "move":
		return &change{kind: kind, from: from, anyHostname: true}
	}
	return &change{kind: "rename", from: from}
}

// Apply gives the container its own identity where its layer does not
// carry it yet (see the package doc). It runs after the union is mounted
// at l.Root and before the container starts. A file it must not touch (a
// symlink, a directory) is left as it is, with a warning; an error means
// the layer could not be changed or recorded, and the start is refused:
// a copy booting with its source's identity is what this prevents.
func Apply(l Layer, log *logrus.Entry) error {
	hostname := UTSName(l.Config, l.Name)
	recPath := filepath.Join(l.Dir, RecordName)
	rec, err := ReadRecord(recPath)
	if err != nil {
		return err
	}
	ch, adopt, err := decide(rec, l.Config, hostname, func() (bool, error) { return upperEmpty(l.Upper) }, exists)
	if err != nil {
		return fmt.Errorf("layer %q: %w", l.Dir, err)
	}
	if adopt {
		log.Debugf("layer %s has no identity record (written before there was one): recorded as %s's, nothing changed", l.Dir, hostname)
		return writeRecord(recPath, Record{Config: l.Config, Hostname: hostname})
	}
	if ch == nil {
		return nil
	}
	// Recorded first: killed halfway, the next start does it all again.
	if err := writeRecord(recPath, Record{Config: l.Config, Hostname: hostname, Pending: ch.kind, From: ch.from}); err != nil {
		return err
	}
	done, err := apply(l.Root, hostname, ch, log)
	if err != nil {
		return fmt.Errorf("giving the container its own identity in %s: %w", l.Root, err)
	}
	if err := writeRecord(recPath, Record{Config: l.Config, Hostname: hostname}); err != nil {
		return err
	}
	if len(done) > 0 {
		why := map[string]string{"new": "a new layer", "copy": "a copy of " + ch.from, "move": "moved or renamed from " + ch.from, "rename": "lxc.uts.name was " + ch.from}[ch.kind]
		log.Infof("own identity (%s): %s", why, strings.Join(done, ", "))
	}
	return nil
}

// apply makes the change in the container's root and says what it did.
func apply(rootPath, hostname string, ch *change, log *logrus.Entry) ([]string, error) {
	r, err := openRoot(rootPath)
	if err != nil {
		return nil, err
	}
	defer r.close()
	var done []string
	skipped := func(rel string, err error) {
		log.Warnf("/%s in the container was left as it is: %v", rel, err)
	}
	if !ValidHostname(hostname) {
		log.Warnf("the container's name %q is not a valid hostname: /etc/hostname and /etc/hosts were left as they are", hostname)
	} else {
		text, err := r.readFile("etc/hostname", 4096)
		switch {
		case errors.Is(err, errAbsent):
			// No /etc/hostname: LXC's lxc.uts.name stays the hostname (as
			// after lxc-copy, which writes only an existing one).
		case errors.Is(err, errRefused):
			skipped("etc/hostname", err)
		case err != nil:
			return done, err
		default:
			cur := strings.TrimSpace(text)
			if cur != hostname && (ch.anyHostname || cur == ch.from) {
				if err := r.rewrite("etc/hostname", hostname+"\n"); err != nil {
					return done, err
				}
				done = append(done, "hostname "+hostname)
			}
		}
		text, err = r.readFile("etc/hosts", 1<<20)
		switch {
		case errors.Is(err, errAbsent):
		case errors.Is(err, errRefused):
			skipped("etc/hosts", err)
		case err != nil:
			return done, err
		default:
			if out, changed := Hosts(text, hostname, ch.from); changed {
				if err := r.rewrite("etc/hosts", out); err != nil {
					return done, err
				}
				done = append(done, "/etc/hosts 127.0.1.1 "+hostname)
			}
		}
	}
	if !ch.machineID {
		return done, nil
	}
	emptied, err := emptyMachineIDs(r, skipped)
	for _, rel := range emptied {
		done = append(done, "/"+rel+" emptied (a new one at boot)")
	}
	return done, err
}

// emptyMachineIDs empties the machine-id files under r that hold an id
// and returns them; skipped hears of one that is not a regular file.
func emptyMachineIDs(r *root, skipped func(rel string, err error)) ([]string, error) {
	var done []string
	for _, rel := range MachineIDFiles {
		text, err := r.readFile(rel, 4096)
		switch {
		case errors.Is(err, errAbsent):
			continue
		case errors.Is(err, errRefused):
			if rel == "etc/machine-id" {
				skipped(rel, err)
			} // else: Debian's /var/lib/dbus/machine-id, a symlink to it
			continue
		case err != nil:
			return done, err
		}
		if !NeedsEmptying(text) {
			continue
		}
		if err := r.rewrite(rel, ""); err != nil {
			return done, err
		}
		done = append(done, rel)
	}
	return done, nil
}

// EmptyMachineIDs empties the machine-id files of the root directory dir
// (a template being built: its own output, never a source) and returns
// those it emptied, as paths relative to dir. A symlink or other
// non-regular file there is left as it is.
func EmptyMachineIDs(dir string) ([]string, error) {
	r, err := openRoot(dir)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return emptyMachineIDs(r, func(string, error) {})
}

// NeedsEmptying says whether a machine-id file holding text carries an id
// to empty. "uninitialized" is systemd's own first-boot state, left to
// systemd.
func NeedsEmptying(text string) bool {
	t := strings.TrimSpace(text)
	return t != "" && t != "uninitialized"
}

// UTSName is the hostname LXC gives the container: lxc.uts.name from its
// config (lxc.utsname in old configs), else its name.
func UTSName(config, name string) string {
	f, err := os.Open(config)
	if err != nil {
		return name
	}
	defer f.Close()
	v := hook.ConfigValues(f, "lxc.uts.name", "lxc.utsname")
	if n := hook.Last(v["lxc.uts.name"]); n != "" {
		return n
	}
	if n := hook.Last(v["lxc.utsname"]); n != "" {
		return n
	}
	return name
}

// ReadRecord reads a layer's identity record; nil where there is none.
func ReadRecord(path string) (*Record, error) {
	b, err := readNoFollow(path, 64*1024)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity record %q: %w", path, err)
	}
	return ParseRecord(b), nil
}

// ParseRecord reads "key value" lines; unknown keys are ignored.
func ParseRecord(text string) *Record {
	r := &Record{}
	for _, line := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "config":
			r.Config = v
		case "hostname":
			r.Hostname = v
		case "pending":
			r.Pending = v
		case "from":
			r.From = v
		}
	}
	return r
}

func (r Record) String() string {
	s := "config " + r.Config + "\nhostname " + r.Hostname + "\n"
	if r.Pending != "" {
		s += "pending " + r.Pending + "\nfrom " + r.From + "\n"
	}
	return s
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// upperEmpty reports whether a layer's upper directory holds nothing the
// container wrote (AuFS's own .wh..wh.* bookkeeping does not count).
func upperEmpty(upper string) (bool, error) {
	f, err := os.Open(upper)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if !strings.HasPrefix(n, ".wh..wh.") {
			return false, nil
		}
	}
	return true, nil
}
