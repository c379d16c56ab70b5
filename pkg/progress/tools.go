package progress

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The writers below read a tool's own progress output, as it comes (any
// chunking), and show it on a Meter. Each is given the tool's whole
// output (stdout and stderr together), so anything else the tool prints
// is skipped.

// segments splits buffered output at '\r' and '\n' (a redrawn bar ends
// with '\r', a pty turns '\n' into "\r\n"): complete segments go to fn;
// the last, unterminated one stays buffered unless final accepts it.
type segments struct {
	buf   []byte
	fn    func(seg string)
	final func(seg string) bool
}

func (s *segments) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexAny(s.buf, "\r\n")
		if i < 0 {
			break
		}
		if i > 0 {
			s.fn(string(s.buf[:i]))
		}
		s.buf = s.buf[i+1:]
	}
	if len(s.buf) > 0 && s.final != nil && s.final(string(s.buf)) {
		s.buf = s.buf[:0]
	}
	if len(s.buf) > 64<<10 {
		// No line ending in 64 KiB: nothing this reads.
		s.buf = s.buf[:0]
	}
	return len(p), nil
}

// squashfsBar reads mksquashfs's bar, "[====-    ]  600/3080  19%": the
// two counts after the bracket, when the per cent sign that ends it is
// there. (No regexp: it would add 400 KiB to each binary.)
func squashfsBar(seg string) (done, total int64, ok bool) {
	i := strings.LastIndexByte(seg, ']')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(seg[i+1:])
	if len(f) != 2 || !strings.HasSuffix(f[1], "%") {
		return 0, 0, false
	}
	return counts(f[0])
}

// counts reads "DONE/TOTAL".
func counts(s string) (done, total int64, ok bool) {
	a, b, found := strings.Cut(s, "/")
	d, err1 := strconv.ParseInt(a, 10, 64)
	t, err2 := strconv.ParseInt(b, 10, 64)
	return d, t, found && err1 == nil && err2 == nil
}

// Squashfs reads mksquashfs's progress bar (shown on a terminal only: run
// it with execs.Options.Terminal, without -no-progress) and shows its
// count of blocks written.
func Squashfs(m *Meter) io.Writer {
	match := func(seg string) bool {
		done, total, ok := squashfsBar(seg)
		if ok {
			m.Count(done, total, "blocks")
		}
		return ok
	}
	return &segments{fn: func(seg string) { match(seg) }, final: match}
}

// Erofs counts mkfs.erofs's "Processing PATH ..." lines (one per file,
// directory, link, as it goes, without --quiet) against total, the number
// of entries under the source root (CountEntries).
func Erofs(m *Meter, total int64) io.Writer {
	return &erofsFiles{m: m, total: total}
}

type erofsFiles struct {
	m     *Meter
	total int64
	done  int64
	tail  []byte
}

var processing = []byte("Processing ")

func (e *erofsFiles) Write(p []byte) (int, error) {
	b := append(e.tail, p...)
	n := bytes.Count(b, processing)
	e.done += int64(n)
	// Keep what could be the start of a word cut by the chunk's end: one
	// byte short of the word, so no word is counted twice.
	keep := min(len(b), len(processing)-1)
	e.tail = append(e.tail[:0:0], b[len(b)-keep:]...)
	if n > 0 {
		e.m.Count(min(e.done, max(e.total, e.done)), max(e.total, e.done), "files")
	}
	return len(p), nil
}

// e2fsckShare is how much of a whole check each pass takes, as e2fsck's
// own bar weighs them (e2fsck/unix.c, e2fsck_tbl): cumulative per cent at
// the start of pass 1..5 and the end of pass 5.
var e2fsckShare = [...]float64{0, 70, 90, 92, 95, 100}

var e2fsckPass = [...]string{"", "inodes, blocks and sizes", "directory structure", "directory connectivity", "reference counts", "group summary"}

// E2fsck reads e2fsck's completion lines, "PASS CURRENT MAX DEVICE", which
// it writes to the descriptor given with -C (not a bar: a line per step,
// whatever the descriptor is), and shows the whole check's share done.
func E2fsck(m *Meter) io.Writer {
	return &segments{fn: func(seg string) {
		f := strings.Fields(seg)
		if len(f) < 3 {
			return
		}
		pass, err1 := strconv.Atoi(f[0])
		cur, err2 := strconv.ParseFloat(f[1], 64)
		maxv, err3 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil || err3 != nil || pass < 1 || pass > 5 {
			return
		}
		frac := 0.0
		if maxv > 0 {
			frac = min(cur/maxv, 1)
		}
		share := e2fsckShare[pass-1] + (e2fsckShare[pass]-e2fsckShare[pass-1])*frac
		m.Fraction(share/100, fmt.Sprintf("pass %d of 5, %s", pass, e2fsckPass[pass]))
	}}
}

// resize2fsPass reads resize2fs -p's "Begin pass 3 (max = 160)".
func resize2fsPass(line string) (pass string, ok bool) {
	rest, found := strings.CutPrefix(line, "Begin pass ")
	if !found {
		return "", false
	}
	pass, _, _ = strings.Cut(rest, " ")
	_, err := strconv.Atoi(pass)
	return pass, err == nil
}

// Resize2fs reads resize2fs -p: a "Begin pass N (max = M)" line for each
// pass it needs (growing an image with room for growth in its group
// descriptors needs none), then the pass's name and a bar of 40 X's
// drawn over dashes.
func Resize2fs(m *Meter) io.Writer {
	return &resize2fsBar{m: m}
}

type resize2fsBar struct {
	m     *Meter
	pass  string
	label string
	xs    int
	line  []byte
}

func (r *resize2fsBar) Write(p []byte) (int, error) {
	for _, c := range p {
		switch c {
		case '\r', '\n':
			if pass, ok := resize2fsPass(string(r.line)); ok {
				r.pass, r.label, r.xs = pass, "", 0
			}
			r.line = r.line[:0]
			continue
		case 'X':
			if r.pass != "" {
				r.xs++
				if r.label == "" {
					r.label = labelOf(r.line)
				}
				r.m.Fraction(float64(r.xs)/40, "pass "+r.pass+": "+strings.ToLower(r.label))
			}
		}
		if len(r.line) < 4096 {
			r.line = append(r.line, c)
		}
	}
	return len(p), nil
}

// labelOf is the words before the bar on a resize2fs -p line.
func labelOf(line []byte) string {
	s := string(line)
	if i := strings.IndexAny(s, "-\bX"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// mke2fsCount is the last "3/160" mke2fs drew after a phase's name (it
// rubs each out with backspaces before the next).
func mke2fsCount(rest string) (done, total int64, ok bool) {
	f := strings.FieldsFunc(rest, func(r rune) bool { return r == ' ' || r == '\b' })
	for i := len(f) - 1; i >= 0; i-- {
		if d, t, ok := counts(f[i]); ok {
			return d, t, true
		}
	}
	return 0, 0, false
}

// Mke2fs reads mke2fs's own output (without -q): each phase's name
// ("Writing inode tables: ") and its group count, redrawn at most once a
// second, then "done".
func Mke2fs(m *Meter) io.Writer {
	return &mke2fsPhases{m: m}
}

type mke2fsPhases struct {
	m    *Meter
	line []byte
}

func (p *mke2fsPhases) Write(b []byte) (int, error) {
	for _, c := range b {
		if c == '\n' || c == '\r' {
			p.line = p.line[:0]
			continue
		}
		if len(p.line) < 4096 {
			p.line = append(p.line, c)
		}
	}
	phase, rest, ok := strings.Cut(string(p.line), ":")
	if !ok || strings.HasPrefix(phase, "Filesystem") || strings.HasPrefix(phase, "Superblock") {
		return len(b), nil
	}
	phase = strings.ToLower(strings.TrimSpace(phase))
	if phase == "" {
		return len(b), nil
	}
	if done, total, ok := mke2fsCount(rest); ok && !strings.Contains(rest, "done") {
		if total > 0 {
			p.m.Text(fmt.Sprintf("%s %d/%d (%d%%)", phase, done, total, percent(done, total)))
			return len(b), nil
		}
	}
	p.m.Text(phase)
	return len(b), nil
}
