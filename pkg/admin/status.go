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
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/lxclog"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

const statusAbout = `Shows, for every container under the LXC path whose config uses these hooks
(or the NAMEs given): its state, templates, writable layer (directory or
image), the cap, the space used inside, the blocks the layer occupies on
the host, its loop devices, and, for a stopped container whose devices are
still attached, who holds them; its LXC log and the last error the hooks
wrote there since they last started it (why a start was refused). --json
prints the same as one JSON object (fields documented in the README;
stable: fields are only ever added).`

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
	// HookKeys are the lxc.hook.* keys the container's hook line is on;
	// Migrate says what "migrate" would change ("" when they are the
	// current ones: one hook process per start and one per stop).
	HookKeys []string `json:"hook_keys"`
	Migrate  string   `json:"migrate"`
	// Error is why the container's config could not be read (the other
	// fields are then mostly empty), or why its hooks refuse to start it
	// (a hook binary a non-root user can replace, or an lxc.idmap that
	// overlaps another user's or group's IDs); "" when neither.
	Error string `json:"error"`
	// LastError is the newest error the hooks logged for the container
	// since its last successful start ("HOOK: message": why a start was
	// refused, what still held a device after a stop), else "";
	// LastErrorTime is when (RFC 3339, UTC), LogFile the LXC log it was
	// read from ("" where the container has none).
	LastError     string `json:"last_error"`
	LastErrorTime string `json:"last_error_time"`
	LogFile       string `json:"log_file"`
	// Untrusted is why a start would be refused before anything is
	// touched: a layer, image or template path someone other than root
	// can change (package trust); "" when there is none.
	Untrusted string `json:"untrusted"`
}

// Layer is the container's writable layer.
type Layer struct {
	Kind string `json:"kind"` // "directory" or "image"
	Path string `json:"path"`
	// Unlinked is true for a running ephemeral image: Path is the name it
	// was created under, gone from the directory once mounted (the file
	// lives as long as its loop device).
	Unlinked bool `json:"unlinked"`
}

// LoopStatus is a loop device backing a template or the image.
type LoopStatus struct {
	Device  string `json:"device"`
	Role    string `json:"role"` // "template" or "image"
	Backing string `json:"backing"`
	// Shared is true for a template device another running container
	// uses too (templateUsers counts them).
	Shared bool `json:"shared"`
}

func cmdStatus(k Kind, args []string, stdout, stderr io.Writer) (err error) {
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
		// Every NAME gets its entry, one that cannot be read too (with its
		// error): a status that stops at the first broken container hides
		// the others, and one that prints nothing for it hides the error.
		for _, n := range names {
			c, err := loadContainer(*lxcpath, n)
			if err != nil {
				c = &container{Name: n, LXCPath: *lxcpath, Dir: filepath.Join(*lxcpath, n), Config: filepath.Join(*lxcpath, n, "config"), Err: err}
			}
			cs = append(cs, c)
		}
	}
	users := newTemplateUsers(cs)
	var sts []Status
	var failed []string
	for _, c := range cs {
		s := statusOf(c, users)
		// Could not be read at all: the status of it failed. (An error of a
		// container that could be read, a start its hooks refuse, is what
		// the status reports.)
		if s.Error != "" && s.Hook == "" {
			failed = append(failed, s.Name)
		}
		sts = append(sts, s)
	}
	// All printed first; then the exit status says whether any failed.
	defer func() {
		if err == nil && len(failed) > 0 {
			fmt.Fprintf(stderr, "%s status: %d of %d containers could not be read: %s\n", k.Program, len(failed), len(sts), strings.Join(failed, ", "))
			err = reportedError{fmt.Errorf("%d containers could not be read", len(failed))}
		}
	}()
	if *asJSON {
		return writeStatusJSON(stdout, sts)
	}
	for _, s := range sts {
		if s.Hook == "" { // the config could not be read
			fmt.Fprintf(stdout, "%s: %s\n  error:     %s\n", s.Name, s.State, s.Error)
			printLog(stdout, s)
			continue
		}
		fmt.Fprintf(stdout, "%s: %s (%s)\n", s.Name, s.State, s.Hook)
		if s.Error != "" {
			fmt.Fprintf(stdout, "  error:     %s\n", s.Error)
		}
		fmt.Fprintf(stdout, "  templates: %s\n", strings.Join(s.Templates, ", "))
		if s.Ephemeral {
			where := s.Layer.Path
			if s.Layer.Unlinked {
				where += " (unlinked once mounted: it lives as long as its loop device)"
			}
			fmt.Fprintf(stdout, "  layer:     ephemeral %s, new at every start %s\n", map[string]string{"image": "image", "directory": "tmpfs"}[s.Layer.Kind], where)
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
		if s.Migrate != "" {
			fmt.Fprintf(stdout, "  hooks:     on %s, as an earlier version wrote them; %s migrate %s would save a process per start or stop (%s)\n", strings.Join(s.HookKeys, ", "), s.Hook, s.Name, s.Migrate)
		}
		if s.Error != "" {
			fmt.Fprintf(stdout, "  error:     %s\n", s.Error)
		}
		printLog(stdout, s)
		if s.Untrusted != "" {
			fmt.Fprintf(stdout, "  refused:   %s\n", s.Untrusted)
		}
	}
	return nil
}

// printLog shows where the container's log is and the last error in it.
func printLog(w io.Writer, s Status) {
	if s.LogFile != "" {
		fmt.Fprintf(w, "  log:       %s\n", s.LogFile)
	}
	if s.LastError != "" {
		t, _ := time.Parse(time.RFC3339Nano, s.LastErrorTime)
		fmt.Fprintf(w, "  last error (%s): %s\n", t.Format("2006-01-02 15:04:05 MST"), s.LastError)
	}
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

// templateUsers counts which running containers use a template's loop
// device. A container's mount table does not show it (the template is
// mounted before the root is pivoted, and only the overlay stays
// visible), so the count comes from the hooks' runtime records: each lists
// the devices its run uses, by number and disk sequence number (a reused
// number has a new one), with the 64-bit id of the container's mount
// namespace (never reused), which is alive while a process is in it.
// Records and live namespaces are read once per status run, when the
// first template device asks.
type templateUsers struct {
	// roots are the runtime roots to read records from: the default and
	// every --run-dir of the containers listed.
	roots []string
	recs  []*state.Record
	live  map[uint64]bool
}

func newTemplateUsers(cs []*container) *templateUsers {
	u := &templateUsers{}
	seen := map[string]bool{}
	for _, root := range append([]string{"/run/lxc-hooks"}, runDirsOf(cs)...) {
		if !seen[root] {
			seen[root] = true
			u.roots = append(u.roots, root)
		}
	}
	return u
}

func runDirsOf(cs []*container) []string {
	var out []string
	for _, c := range cs {
		if c.Err == nil && c.Hook.RunDir != "" {
			out = append(out, c.Hook.RunDir)
		}
	}
	return out
}

// others counts the live mount namespaces, other than own (0 for none),
// whose run uses loop device number n with disk sequence number seq.
func (u *templateUsers) others(n int, seq, own uint64) int {
	if u.live == nil {
		u.live = holders.LiveMountNSIDs()
		for _, root := range u.roots {
			for _, name := range holders.Names(root) {
				if rec, err := (state.Dir{Path: filepath.Join(root, name)}).Load(); err == nil && rec != nil {
					u.recs = append(u.recs, rec)
				}
			}
		}
	}
	users := map[uint64]bool{}
	for _, rec := range u.recs {
		for _, l := range rec.Loops {
			if l.Number == n && l.Diskseq == seq && l.MountNSID != 0 && l.MountNSID != own && u.live[l.MountNSID] {
				users[l.MountNSID] = true
			}
		}
	}
	return len(users)
}

// hookKeys lists the lxc.hook.* keys (without the prefix) that have an
// lxc-hook-* line in config, in the order they appear.
func hookKeys(config string) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, line := range strings.Split(config, "\n") {
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || !strings.HasPrefix(k, "lxc.hook.") || !strings.Contains(v, "lxc-hook-") || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, strings.TrimPrefix(k, "lxc.hook."))
	}
	return out
}

func statusOf(c *container, users *templateUsers) Status {
	st, pid := c.info()
	if c.Err != nil {
		s := Status{Name: c.Name, State: st, Config: c.Config, Templates: []string{}, Loops: []LoopStatus{}, Error: c.Err.Error()}
		lastError(c, pid, &s)
		return s
	}
	s := Status{Name: c.Name, State: st, Hook: c.Hook.Program, Config: c.Config, Templates: c.Hook.Lowers}
	s.HookKeys = []string{}
	if text, err := os.ReadFile(c.Config); err == nil {
		if err := checkHookBinaries(string(text)); err != nil {
			s.Error = fmt.Sprintf("%v; the hooks refuse to start it: %s, and name it on the hook lines", err, trust.InstallFix)
		}
		s.HookKeys = hookKeys(string(text))
		unpriv := len(hook.ConfigValues(strings.NewReader(string(text)), idmap.ConfigKey)[idmap.ConfigKey]) > 0
		if _, changes, err := migrateText(string(text), unpriv); err == nil && len(changes) > 0 {
			s.Migrate = strings.Join(changes, "; ")
		}
	}
	lastError(c, pid, &s)
	if s.Templates == nil {
		s.Templates = []string{}
	}
	s.IDMap = []string{}
	if m, err := runner.ConfigMapping(c.Config); err == nil && m != nil {
		s.Unprivileged, s.IDMap = true, m.Lines()
		// What pre-start refuses: host IDs another user or group has.
		if err := idmap.CheckHost(m, hostFiles); err != nil {
			s.Error = "start refused: " + err.Error()
		}
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
			if s.Layer.Unlinked {
				s.AllocatedBytes = s.UsedBytes
			}
		}
	}
	// A template device is shared when another running container uses
	// it: counted, not assumed.
	var own uint64
	if st == "RUNNING" {
		if rec, _ := state.For(c.Hook.RunDir, c.Name, c.Config).Load(); rec != nil {
			for _, l := range rec.Loops {
				if l.MountNSID != 0 {
					own = l.MountNSID
				}
			}
		}
	}
	for _, p := range c.Hook.Lowers {
		for _, l := range loopsOf(p, "template") {
			l.Shared = users.others(l.number, l.diskseq, own) > 0
			s.Loops = append(s.Loops, l.LoopStatus)
		}
	}
	if c.Hook.Image != "" && !c.Hook.Ephemeral {
		for _, l := range loopsOf(c.Hook.Image, "image") {
			s.Loops = append(s.Loops, l.LoopStatus)
		}
	}
	if s.Loops == nil {
		s.Loops = []LoopStatus{}
	}
	if st == "STOPPED" {
		s.Holders = holdersOf(c)
	}
	return s
}

// lastError fills in the container's log and the last error the hooks
// wrote there since they last started it (or, for a running container
// started before that was recorded, since its init began).
func lastError(c *container, pid int, s *Status) {
	path := lxclog.LogFile(c.Config, c.Name)
	if _, err := os.Stat(path); err != nil {
		return
	}
	s.LogFile = path
	since := lxclog.LastStart(c.Dir)
	if t := processStart(pid); t.After(since) {
		since = t
	}
	if e, ok, err := lxclog.LastError(path, c.Name, since); err == nil && ok {
		s.LastError = e.Hook + ": " + e.Message
		s.LastErrorTime = e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
}

// processStart is when process pid began (zero if unknown): its start in
// clock ticks after boot (/proc/PID/stat) plus the boot time (/proc/stat).
func processStart(pid int) time.Time {
	if pid <= 0 {
		return time.Time{}
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return time.Time{}
	}
	// The command name in parentheses may hold blanks: fields count from
	// after its closing parenthesis, where field 3 (state) begins.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return time.Time{}
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return time.Time{}
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64) // field 22, starttime
	if err != nil {
		return time.Time{}
	}
	st, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}
			}
			// USER_HZ is 100 on every architecture Linux runs LXC on.
			return time.Unix(boot, 0).Add(time.Duration(ticks) * 10 * time.Millisecond)
		}
	}
	return time.Time{}
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
// for a running container the image's loop device from the runtime record,
// verified bound as recorded (number and disk sequence number). The image
// file is unlinked once mounted, so no path reaches it any more: its size
// is the device's, and what it occupies on the host is what its
// filesystem uses (statfs inside, below; sparse, with discard on, the file
// holds about that).
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
			if l.Role != "image" {
				continue
			}
			if ls, err := loop.StatusOf(l.Number); err != nil || ls.Diskseq != l.Diskseq {
				continue // the record's device is gone or someone else's now
			}
			s.Layer.Path, s.Layer.Unlinked = l.Backing, true
			s.Loops = append(s.Loops, LoopStatus{Device: l.Device, Role: "image", Backing: l.Backing})
			if n := loopSize(l.Number); n > 0 {
				s.CapBytes = n
			}
		}
	}
}

// loopSize is loop device n's size in bytes from sysfs, 0 if unknown.
func loopSize(n int) int64 {
	b, err := os.ReadFile("/sys/block/loop" + strconv.Itoa(n) + "/size")
	if err != nil {
		return 0
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0
	}
	return sectors * 512
}

// boundLoop is a loop device bound to a file, with its number.
type boundLoop struct {
	LoopStatus
	number  int
	diskseq uint64
}

// loopsOf lists the loop devices bound to file p.
func loopsOf(p, role string) []boundLoop {
	var st unix.Stat_t
	if unix.Stat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	found, _ := loop.FindByBacking(uint64(st.Dev), st.Ino)
	var out []boundLoop
	for _, f := range found {
		out = append(out, boundLoop{LoopStatus{Device: f.Path, Role: role, Backing: p}, f.Number, f.Diskseq})
	}
	return out
}

// holdersOf names who holds a stopped container's devices: its image's
// device, and its leftover records.
func holdersOf(c *container) string {
	run := state.For(c.Hook.RunDir, c.Name, c.Config)
	rec, _ := run.Load()
	var parts []string
	// An unprivileged container's root pre-start attached on the host for
	// LXC, still there although the container is stopped: no stop hook
	// ran (LXC's monitor was killed).
	if rec != nil && rec.HostRoot != nil {
		if id, _, err := holders.MountID(rec.HostRoot.Path); err == nil && id == rec.HostRoot.MountID {
			parts = append(parts, fmt.Sprintf("the container's root is still mounted on %s (its stop hook never ran); the next start, or %s release %s, detaches it", rec.HostRoot.Path, c.Hook.Program, c.Name))
		}
	}
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
