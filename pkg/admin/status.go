package admin

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
)

const statusAbout = `Shows, for every container under the LXC path whose config uses these hooks
(or the NAMEs given): its state, templates, writable layer (directory or
image), the cap, the space used inside, the blocks the layer occupies on
the host, its loop devices, and, for a stopped container whose devices are
still attached, who holds them. --json prints the same as one JSON object
(fields documented in the README; stable: fields are only ever added).`

// Status is one container's line; its JSON form is documented in the README.
type Status struct {
	Name      string
	State     string
	Hook      string
	Config    string
	Templates []string
	// LayerKind is "directory" or "image".
	LayerKind string
	LayerPath string
	// CapBytes is the image's size (0 for a directory layer: no cap).
	CapBytes int64
	// UsedBytes is the space used in the layer's filesystem (image) or by
	// the layer's files (directory).
	UsedBytes int64
	// AllocatedBytes is what the layer occupies on the host's disk.
	AllocatedBytes int64
	Loops          []LoopStatus
	// Ephemeral: a new layer at every start (--ephemeral), none when
	// stopped.
	Ephemeral bool
	// Holders is set for a stopped container whose devices are still
	// attached: who holds them.
	Holders string
	// Unprivileged is true for a container with lxc.idmap; IDMap is its
	// mapping, one lxc.idmap value each ("u 0 100000 65536").
	Unprivileged bool     `json:"unprivileged"`
	IDMap        []string `json:"idmap"`
}

// LoopStatus is a loop device backing a template or the image.
type LoopStatus struct {
	Device  string
	Role    string // "template" or "image"
	Backing string
	// Shared is true for a template device other containers may use too.
	Shared bool
}

func cmdStatus(k Kind, args []string, stdout io.Writer) error {
	fs := flags(k, "status", "[NAME...] [--json] [-P LXCPATH]", statusAbout, stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	lxcpath := fs.String("P", "", "`LXCPATH` (default: LXC's lxc.lxcpath)")
	fs.StringVar(lxcpath, "lxcpath", "", "same as -P")
	names, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *lxcpath == "" {
		*lxcpath = defaultLXCPath()
	}
	var cs []*container
	if len(names) == 0 {
		if cs, err = containers(*lxcpath); err != nil {
			return err
		}
	} else {
		for _, n := range names {
			c, err := loadContainer(*lxcpath, n)
			if err != nil {
				return err
			}
			cs = append(cs, c)
		}
	}
	var sts []Status
	for _, c := range cs {
		sts = append(sts, statusOf(c))
	}
	if *asJSON {
		_, err := io.WriteString(stdout, statusJSON(sts))
		return err
	}
	for _, s := range sts {
		fmt.Fprintf(stdout, "%s: %s (%s)\n", s.Name, s.State, s.Hook)
		fmt.Fprintf(stdout, "  templates: %s\n", strings.Join(s.Templates, ", "))
		if s.Ephemeral {
			fmt.Fprintf(stdout, "  layer:     ephemeral %s, new at every start %s\n", map[string]string{"image": "image", "directory": "tmpfs"}[s.LayerKind], s.LayerPath)
		} else {
			fmt.Fprintf(stdout, "  layer:     %s %s\n", s.LayerKind, s.LayerPath)
		}
		if s.CapBytes > 0 {
			fmt.Fprintf(stdout, "  cap:       %s, used inside %s, on the host %s\n", image.Human(s.CapBytes), humanApprox(s.UsedBytes), humanApprox(s.AllocatedBytes))
		} else {
			fmt.Fprintf(stdout, "  used:      %s (no cap), on the host %s\n", humanApprox(s.UsedBytes), humanApprox(s.AllocatedBytes))
		}
		for _, l := range s.Loops {
			shared := ""
			if l.Shared {
				shared = ", shared"
			}
			fmt.Fprintf(stdout, "  loop:      %s (%s%s) %s\n", l.Device, l.Role, shared, l.Backing)
		}
		if s.Holders != "" {
			fmt.Fprintf(stdout, "  held:      %s\n", strings.TrimPrefix(s.Holders, "; "))
		}
		if s.Unprivileged {
			fmt.Fprintf(stdout, "  idmap:     unprivileged, %s\n", strings.Join(s.IDMap, ", "))
		}
	}
	return nil
}

func humanApprox(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return strconv.FormatInt(n, 10)
}

func statusOf(c *container) Status {
	st, pid := c.info()
	s := Status{Name: c.Name, State: st, Hook: c.Hook.Program, Config: c.Config, Templates: c.Hook.Lowers}
	if s.Templates == nil {
		s.Templates = []string{}
	}
	s.IDMap = []string{}
	if m, err := runner.ConfigMapping(c.Config); err == nil && m != nil {
		s.Unprivileged, s.IDMap = true, m.Lines()
	}
	if c.Hook.Ephemeral {
		statusEphemeral(c, st, &s)
	} else if c.Hook.Image != "" {
		s.LayerKind, s.LayerPath = "image", c.Hook.Image
		if f, err := os.Open(c.Hook.Image); err == nil {
			apparent, allocated, _, _ := image.Usage(f)
			s.CapBytes, s.AllocatedBytes = apparent, allocated
			if sb, err := image.ReadSuperblock(f); err == nil {
				s.UsedBytes = sb.Used()
			}
			f.Close()
		}
	} else {
		s.LayerKind, s.LayerPath = "directory", c.Hook.Upper
		s.UsedBytes, s.AllocatedBytes = du(c.Hook.Upper)
	}
	if st == "RUNNING" && pid > 0 && (s.LayerKind == "image" || s.Ephemeral) {
		// The overlay's statfs is its upper layer's: the live figure, where
		// the superblock's free count lags.
		var sfs unix.Statfs_t
		if unix.Statfs("/proc/"+strconv.Itoa(pid)+"/root/", &sfs) == nil {
			s.UsedBytes = int64(sfs.Blocks-sfs.Bfree) * int64(sfs.Bsize)
		}
	}
	for _, p := range c.Hook.Lowers {
		s.Loops = append(s.Loops, loopsOf(p, "template", true)...)
	}
	if c.Hook.Image != "" && !c.Hook.Ephemeral {
		s.Loops = append(s.Loops, loopsOf(c.Hook.Image, "image", false)...)
	}
	if s.Loops == nil {
		s.Loops = []LoopStatus{}
	}
	if st == "STOPPED" {
		s.Holders = holdersOf(c)
	}
	return s
}

// statusEphemeral fills in an --ephemeral layer: its cap (--size), and
// for a running container the image's loop device from the runtime record
// (its file is unlinked once mounted).
func statusEphemeral(c *container, st string, s *Status) {
	s.Ephemeral, s.LayerKind = true, "directory"
	if c.Hook.Image != "" {
		s.LayerKind = "image"
	}
	s.CapBytes, _ = image.ParseSize(c.Hook.Size)
	if st != "RUNNING" {
		return
	}
	if rec, _ := state.For(c.Hook.RunDir, c.Name, c.Config).Load(); rec != nil {
		for _, l := range rec.Loops {
			if l.Role == "image" {
				s.LayerPath = l.Backing + " (deleted)"
				s.Loops = append(s.Loops, LoopStatus{Device: l.Device, Role: "image", Backing: s.LayerPath})
			}
		}
	}
}

// loopsOf lists the loop devices bound to file p.
func loopsOf(p, role string, shared bool) []LoopStatus {
	var st unix.Stat_t
	if unix.Stat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	found, _ := loop.FindByBacking(uint64(st.Dev), st.Ino)
	var out []LoopStatus
	for _, f := range found {
		out = append(out, LoopStatus{Device: f.Path, Role: role, Backing: p, Shared: shared})
	}
	return out
}

// holdersOf names who holds a stopped container's devices: its image's
// device, and its leftover records.
func holdersOf(c *container) string {
	run := state.For(c.Hook.RunDir, c.Name, c.Config)
	rec, _ := run.Load()
	var parts []string
	if c.Hook.Image != "" {
		var st unix.Stat_t
		if unix.Stat(c.Hook.Image, &st) == nil {
			found, _ := loop.FindByBacking(uint64(st.Dev), st.Ino)
			for _, f := range found {
				l := state.Loop{Device: f.Path, Number: f.Number, Diskseq: f.Diskseq}
				if rec != nil {
					for _, r := range append(rec.Loops, rec.Leftovers...) {
						if r.Number == f.Number {
							l = r
						}
					}
				}
				parts = append(parts, f.Path+runner.HeldBy(c.Hook.RunDir, l))
			}
		}
	}
	if rec != nil && len(parts) == 0 {
		for _, l := range rec.Leftovers {
			if h := runner.HeldBy(c.Hook.RunDir, l); h != "" {
				parts = append(parts, l.Device+h)
			}
		}
	}
	return strings.Join(parts, "; ")
}

// du sums the sizes and the allocated blocks of the files below dir,
// without following symlinks or crossing into other filesystems.
func du(dir string) (size, allocated int64) {
	var root unix.Stat_t
	if unix.Lstat(dir, &root) != nil {
		return 0, 0
	}
	var walk func(p string)
	walk = func(p string) {
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Dev != root.Dev {
			return
		}
		size += st.Size
		allocated += st.Blocks * 512
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			for _, n := range holders.Names(p) {
				walk(filepath.Join(p, n))
			}
		}
	}
	walk(dir)
	return size, allocated
}

// statusJSON writes the statuses by hand: encoding/json alone would add a
// twentieth to every hook binary.
func statusJSON(sts []Status) string {
	var b strings.Builder
	b.WriteString("{\"containers\": [")
	for i, s := range sts {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  {")
		field := func(first bool, k, v string) {
			if !first {
				b.WriteString(", ")
			}
			b.WriteString(jsonString(k) + ": " + v)
		}
		field(true, "name", jsonString(s.Name))
		field(false, "state", jsonString(s.State))
		field(false, "hook", jsonString(s.Hook))
		field(false, "config", jsonString(s.Config))
		var tpls []string
		for _, t := range s.Templates {
			tpls = append(tpls, jsonString(t))
		}
		field(false, "templates", "["+strings.Join(tpls, ", ")+"]")
		field(false, "layer", fmt.Sprintf("{%s: %s, %s: %s}", jsonString("kind"), jsonString(s.LayerKind), jsonString("path"), jsonString(s.LayerPath)))
		field(false, "cap_bytes", strconv.FormatInt(s.CapBytes, 10))
		field(false, "used_bytes", strconv.FormatInt(s.UsedBytes, 10))
		field(false, "allocated_bytes", strconv.FormatInt(s.AllocatedBytes, 10))
		var loops []string
		for _, l := range s.Loops {
			loops = append(loops, fmt.Sprintf("{%s: %s, %s: %s, %s: %s, %s: %t}",
				jsonString("device"), jsonString(l.Device), jsonString("role"), jsonString(l.Role),
				jsonString("backing"), jsonString(l.Backing), jsonString("shared"), l.Shared))
		}
		field(false, "loop_devices", "["+strings.Join(loops, ", ")+"]")
		field(false, "holders", jsonString(s.Holders))
		field(false, "ephemeral", strconv.FormatBool(s.Ephemeral))
		var idm []string
		for _, l := range s.IDMap {
			idm = append(idm, jsonString(l))
		}
		field(false, "unprivileged", strconv.FormatBool(s.Unprivileged))
		field(false, "idmap", "["+strings.Join(idm, ", ")+"]")
		b.WriteString("}")
	}
	b.WriteString("\n]}\n")
	return b.String()
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || r == 0xfffd:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
