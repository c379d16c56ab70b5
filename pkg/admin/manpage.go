package admin

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
)

// HookHelp prints the hook's own --help; set by the binary's main so the
// man page says what --help says.
var HookHelp func(w io.Writer)

// cmdManpage writes the section 1 man page, built from the same help texts
// --help prints.
func cmdManpage(k Kind, args []string, w io.Writer) error {
	fs := flags(k, "manpage", "", "Writes this binary's section 1 man page (roff) to stdout, made from the\nsame texts as --help and each command's --help.", w)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (see --help)", pos[0])}
	}
	esc := func(s string) string {
		s = strings.ReplaceAll(s, `\`, `\\`)
		s = strings.ReplaceAll(s, "\n.", "\n\\&.")
		s = strings.ReplaceAll(s, "\n'", "\n\\&'")
		return strings.ReplaceAll(s, "-", `\-`)
	}
	fmt.Fprintf(w, ".TH %s 1 %q %q\n.SH NAME\n%s \\- LXC hook: a writable layer over a read-only template\n", strings.ToUpper(k.Program), manDate().Format("2006-01-02"), "lxc-hooks "+runner.Version, k.Program)
	fmt.Fprintf(w, ".SH HOOK MODE\n.nf\n")
	if HookHelp != nil {
		var b strings.Builder
		HookHelp(&b)
		io.WriteString(w, esc(b.String()))
	}
	fmt.Fprintf(w, ".fi\n.SH COMMANDS\n")
	for _, c := range CommandNames(k) {
		var b strings.Builder
		Main(k, []string{c, "--help"}, &b, io.Discard)
		fmt.Fprintf(w, ".SS %s\n.nf\n%s.fi\n", c, esc(b.String()))
	}
	fmt.Fprintf(w, ".SH SEE ALSO\nlxc.container.conf(5), lxc\\-start(1), lxc\\-stop(1), lxc\\-copy(1), losetup(8), e2fsck(8)\n")
	return nil
}

// manDate is the page's date: SOURCE_DATE_EPOCH where the build sets it (the
// commit's time, so that one commit gives the same package), else today.
func manDate() time.Time {
	if n, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		return time.Unix(n, 0).UTC()
	}
	return time.Now().UTC()
}
