package admin

import (
	"encoding/json"
	"errors"
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
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

const statusAbout = `Shows, for every container under the LXC path whose config uses these hooks
(or the NAMEs given): its state, templates, writable layer (directory or
image), the cap, the space used inside, the blocks the layer occupies on
the host, its loop devices, and, for a stopped container whose devices are
still attached, who holds them. --json prints the same as one JSON object
(fields documented in the README; stable: fields are only ever added).`

// Status is one container's entry; its JSON form is documented in the
// README (fields are only ever added).
type Status struct {
	Name      string   `json:"name"`
	State     string   `json:"state"`
	Hook      string   `json:"hook"`
	Config    string   `json:"config"`
	Templates []string `json:"templates"`
	Layer     Layer    `json:"layer"`
	// CapBytes is the image's size (0 for a directory layer: no cap).
	CapBytes int64 `json:"cap_bytes"`
	// UsedBytes is the space used in the layer's filesystem (image) or by
	// the layer's files (directory).
	UsedBytes int64 `json:"used_bytes"`
	// AllocatedBytes is what the layer occupies on the host's disk.
	AllocatedBytes int64        `json:"allocated_bytes"`
	Loops          []LoopStatus `json:"loop_devices"`
	// Ephemeral: a new layer at every start (--ephemeral), none when
	// stopped.
	Ephemeral bool `json:"ephemeral"`
	// Holders is set for a stopped container whose devices are still
	// attached: who holds them.
	Holders string `json:"holders"`
	// Unprivileged is true for a container with lxc.idmap; IDMap is its
	// mapping, one lxc.idmap value each ("u 0 100000 65536").
	Unprivileged bool     `json:"unprivileged"`
	IDMap        []string `json:"idmap"`
	// Error is why the container's config could not be read ("" when it
	// could); the other fields are then mostly empty.
	Error string `json:"error"`
	// Untrusted is why a start would be refused before anything is
	// touched: a layer, image or template path someone other than root
	// can change (package trust); "" when there is none.
	Untrusted string `json:"untrusted"`
}

// Layer is the container's writable layer.
type Layer struct {
	Kind string `json:"kind"` // "directory" or "image"
	Path string `json:"path"`
}

// LoopStatus is a loop device backing a template or the image.
type LoopStatus struct {
	Device  string `json:"device"`
	Role    string `json:"role"` // "template" or "image"
	Backing string `json:"backing"`
	// Shared is true for a template device other containers may use too.
	Shared bool `json:"shared"`
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
		return writeStatusJSON(stdout, sts)
	}
	for _, s := range sts {
		if s.Error != "" {
			fmt.Fprintf(stdout, "%s: %s\n  error:     %s\n", s.Name, s.State, s.Error)
			continue
		}
		fmt.Fprintf(stdout, "%s: %s (%s)\n", s.Name, s.State, s.Hook)
		fmt.Fprintf(stdout, "  templates: %s\n", strings.Join(s.Templates, ", "))
		if s.Ephemeral {
			fmt.Fprintf(stdout, "  layer:     ephemeral %s, new at every start %s\n", map[string]string{"image": "image", "directory": "tmpfs"}[s.Layer.Kind], s.Layer.Path)
		} else {
			fmt.Fprintf(stdout, "  layer:     %s %s\n", s.Layer.Kind, s.Layer.Path)
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
		if s.Untrusted != "" {
			fmt.Fprintf(stdout, "  refused:   %s\n", s.Untrusted)
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
	if c.Err != nil {
		return Status{Name: c.Name, State: st, Config: c.Config, Templates: []string{}, Loops: []LoopStatus{}, Error: c.Err.Error()}
	}
	s := Status{Name: c.Name, State: st, Hook: c.Hook.Program, Config: c.Config, Templates: c.Hook.Lowers}
	if s.Templates == nil {
		s.Templates = []string{}
	}
	s.IDMap = []string{}
	if m, err := runner.ConfigMapping(c.Config); err == nil && m != nil {
		s.Unprivileged, s.IDMap = true, m.Lines()
	}
	s.Untrusted = untrusted(c)
	if c.Hook.Ephemeral {
		statusEphemeral(c, st, &s)
	} else if c.Hook.Image != "" {
		s.Layer = Layer{Kind: "image", Path: c.Hook.Image}
		if f, err := image.Open(c.Hook.Image, os.O_RDONLY); err == nil {
			apparent, allocated, _, _ := image.Usage(f)
			s.CapBytes, s.AllocatedBytes = apparent, allocated
			if sb, err := image.ReadSuperblock(f); err == nil {
				s.UsedBytes = sb.Used()
			}
			f.Close()
		}
	} else {
		s.Layer = Layer{Kind: "directory", Path: c.Hook.Upper}
		s.UsedBytes, s.AllocatedBytes = du(c.Hook.Upper)
	}
	if st == "RUNNING" && pid > 0 && (s.Layer.Kind == "image" || s.Ephemeral) {
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

// untrusted runs the checks of a start over the container's paths (package
// trust): its templates (--lower) and its writable layer, and says why the
// start would be refused, or "". A layer not made yet is checked as far as
// it exists: the directories its first start would make it in.
func untrusted(c *container) string {
	if c.Hook.LowersGiven {
		for _, p := range c.Hook.Lowers {
			if err := trust.Check(p, "lower"); errors.Is(err, trust.ErrUntrusted) {
				return err.Error()
			}
		}
	}
	var err error
	switch {
	case c.Hook.Image != "":
		var f *os.File
		if f, err = image.Open(c.Hook.Image, os.O_RDONLY); errors.Is(err, os.ErrNotExist) {
			err = parentOK(c.Hook.Image, "--image")
		} else if err == nil {
			f.Close()
		}
	case c.Hook.Upper != "" && !c.Hook.Ephemeral:
		var d *trust.Dir
		if d, err = trust.OpenDir(c.Hook.Upper, "--upper"); errors.Is(err, os.ErrNotExist) {
			err = parentOK(c.Hook.Upper, "--upper")
		} else if err == nil {
			d.Close()
		}
	}
	var te *trust.Error
	var le *trust.LinkError
	var ie *image.LinksError
	if errors.As(err, &te) || errors.As(err, &le) || errors.As(err, &ie) {
		return err.Error()
	}
	return ""
}

// parentOK checks the directories above a path that does not exist yet.
func parentOK(path, what string) error {
	d, _, err := trust.Parent(path, what)
	if err == nil {
		d.Close()
	}
	return err
}

// statusEphemeral fills in an --ephemeral layer: its cap (--size), and
// for a running container the image's loop device from the runtime record
// (its file is unlinked once mounted).
func statusEphemeral(c *container, st string, s *Status) {
	s.Ephemeral, s.Layer.Kind = true, "directory"
	if c.Hook.Image != "" {
		s.Layer.Kind = "image"
	}
	s.CapBytes, _ = image.ParseSize(c.Hook.Size)
	if st != "RUNNING" {
		return
	}
	if rec, _ := state.For(c.Hook.RunDir, c.Name, c.Config).Load(); rec != nil {
		for _, l := range rec.Loops {
			if l.Role == "image" {
				s.Layer.Path = l.Backing + " (deleted)"
				s.Loops = append(s.Loops, LoopStatus{Device: l.Device, Role: "image", Backing: s.Layer.Path})
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

// writeStatusJSON prints {"containers": [...]}. Names and paths are Go
// strings of bytes: encoding/json writes bytes that are not UTF-8 as
// U+FFFD, so the output stays valid JSON.
func writeStatusJSON(w io.Writer, sts []Status) error {
	if sts == nil {
		sts = []Status{}
	}
	for i := range sts { // fields documented as arrays are never null
		if sts[i].Templates == nil {
			sts[i].Templates = []string{}
		}
		if sts[i].Loops == nil {
			sts[i].Loops = []LoopStatus{}
		}
		if sts[i].IDMap == nil {
			sts[i].IDMap = []string{}
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		Containers []Status `json:"containers"`
	}{sts})
}
