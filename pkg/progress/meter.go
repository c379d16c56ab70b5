package progress

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// redrawEvery bounds how often a step's line is redrawn: often enough to
// look alive, rarely enough to cost nothing over a slow ssh session.
const redrawEvery = 100 * time.Millisecond

// Meter draws the progress of a command's steps on a terminal.
type Meter struct {
	mu    sync.Mutex
	w     io.Writer
	width func() int
	now   func() time.Time

	step   string    // the current step's label, "" between steps
	t0     time.Time // when it started
	drawn  time.Time // when its line was last drawn
	text   string    // the figures shown after the label
	done   string    // what the figures read once the step is complete
	onLine bool      // the step's line is on the terminal, not yet ended
}

// New is a Meter drawing on w when w is a terminal, else nil (no
// progress: a nil Meter's methods do nothing).
func New(w io.Writer) *Meter {
	f, ok := w.(*os.File)
	if !ok || !IsTerminal(f) {
		return nil
	}
	return &Meter{w: f, width: func() int { return termWidth(f) }, now: time.Now}
}

// IsTerminal reports whether f is a terminal (isatty: the TCGETS ioctl
// answers).
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// termWidth is the terminal's width in columns, 0 when unknown.
func termWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

// Step begins a step labelled label (ending the line of a step still
// shown, as interrupted) and shows its label at once.
func (m *Meter) Step(label string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.onLine {
		io.WriteString(m.w, "\n")
	}
	m.step, m.t0, m.text, m.done, m.onLine = label, m.now(), "", "", false
	m.draw(true)
}

// Bytes shows done bytes of total.
func (m *Meter) Bytes(done, total int64) {
	if m == nil {
		return
	}
	if total <= 0 {
		m.update(Size(done), Size(done))
		return
	}
	m.update(fmt.Sprintf("%s of %s (%d%%)", Size(done), Size(total), percent(done, total)),
		fmt.Sprintf("%s of %s (100%%)", Size(total), Size(total)))
}

// Count shows done of total things (files, blocks).
func (m *Meter) Count(done, total int64, things string) {
	if m == nil {
		return
	}
	if total <= 0 {
		m.update(fmt.Sprintf("%d %s", done, things), fmt.Sprintf("%d %s", done, things))
		return
	}
	m.update(fmt.Sprintf("%d of %d %s (%d%%)", done, total, things, percent(done, total)),
		fmt.Sprintf("%d of %d %s (100%%)", total, total, things))
}

// Fraction shows a fraction done (0 to 1) of the step, after detail
// ("pass 2 of 5"); detail may be "".
func (m *Meter) Fraction(f float64, detail string) {
	if m == nil {
		return
	}
	f = min(max(f, 0), 1)
	pct := strconv.Itoa(int(f*100)) + "%"
	if detail != "" {
		m.update(detail+" ("+pct+")", detail+" (100%)")
		return
	}
	m.update(pct, "100%")
}

// Text shows free text as the step's state (a tool's phase).
func (m *Meter) Text(s string) {
	if m == nil {
		return
	}
	m.update(s, "")
}

func (m *Meter) update(text, done string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.step == "" || text == m.text {
		return
	}
	first := m.text == ""
	m.text, m.done = text, done
	m.draw(first) // a step's first figures are shown at once
}

// End ends the current step: with err nil its line shows it complete and
// the time it took; otherwise its figures as they stand and "failed" (the
// caller says why), and the line is ended, so that what is printed next
// starts a line of its own.
func (m *Meter) End(err error) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.step == "" {
		return
	}
	if err == nil {
		took := m.now().Sub(m.t0)
		m.text = m.done
		if m.text != "" {
			m.text += ", "
		}
		m.text += "done in " + seconds(took)
		m.draw(true)
	} else if m.onLine {
		if m.text != "" {
			m.text += ", "
		}
		m.text += "failed"
		m.draw(true)
	}
	if m.onLine {
		io.WriteString(m.w, "\n")
	}
	m.step, m.onLine = "", false
}

// draw redraws the step's line in place: at most every redrawEvery
// unless forced.
func (m *Meter) draw(force bool) {
	now := m.now()
	if !force && m.onLine && now.Sub(m.drawn) < redrawEvery {
		return
	}
	line := m.step
	if m.text != "" {
		line += ": " + m.text
	}
	// One terminal line: a wrapped line cannot be redrawn with \r.
	if w := m.width(); w > 1 && len(line) > w-1 {
		line = line[:w-1]
	}
	io.WriteString(m.w, "\r"+line+"\x1b[K")
	m.drawn, m.onLine = now, true
}

func percent(done, total int64) int {
	if total <= 0 {
		return 0
	}
	return int(min(max(done, 0), total) * 100 / total)
}

// Size is n bytes in binary units with one decimal ("1.5G"), as status
// shows sizes.
func Size(n int64) string {
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

func seconds(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}
