package hook

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// shWords asks /bin/sh how it splits line (what LXC's sh -c does).
func shWords(t *testing.T, line string) []string {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", `printf '%s\0' `+line).Output()
	if err != nil {
		t.Fatalf("sh on %q: %v", line, err)
	}
	ws := strings.Split(string(out), "\x00")
	return ws[:len(ws)-1]
}

func TestSplitWordsAgreesWithSh(t *testing.T) {
	for _, line := range []string{
		`/h/lxc-hook-loopimg --lower /t/a.sqfs --size 2G`,
		`/h/x   --size  32M	--lower=/t`,
		`'/srv/my templates/a.sqfs' --image "/srv/my img"`,
		`/a\ b --x "q\"uote\\d\n" 'it'\''s' ''`,
		`--name="a b"'c d'e`,
		`/p/with~tilde /p/a#b x=~`,
		`"back\slash kept" \'`,
		`a"b"c`,
	} {
		got, err := SplitWords(line)
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if want := shWords(t, line); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: got %q, sh says %q", line, got, want)
		}
	}
}

func TestSplitWordsRefusesExpansions(t *testing.T) {
	for line, want := range map[string]string{
		`/h --lower $HOME/t`:       "expand",
		`/h --lower /t/$(touch x)`: "expand",
		"/h --lower /t/`id`":       "command substitution",
		`/h --lower "/t/$(id)"`:    "inside double quotes",
		`/h; rm -rf /`:             "command separator",
		`/h > /tmp/x`:              "redirection",
		`/h --lower /t/*.sqfs`:     "file name pattern",
		`/h --lower ~/t`:           "home directory",
		`/h # comment`:             "comment",
		`/h 'open`:                 "unterminated single quote",
		`/h "open`:                 "unterminated double quote",
		`/h trailing\`:             "backslash ends the line",
	} {
		_, err := SplitWords(line)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", line, err, want)
		}
	}
}

func TestQuoteRoundTripsThroughSh(t *testing.T) {
	words := []string{"/usr/share/lxc/hooks/lxc-hook-loopimg", "--lower", "/srv/my templates/a b.sqfs",
		"/t/$(touch /tmp/pwned)", "it's", "", "a\"b\\c", "tab\there", "--size=2G", "`id`;&|<>*?[~#"}
	line := JoinWords(words)
	if got := shWords(t, line); !reflect.DeepEqual(got, words) {
		t.Fatalf("sh read %q back as %q", line, got)
	}
	if got, err := SplitWords(line); err != nil || !reflect.DeepEqual(got, words) {
		t.Fatalf("SplitWords read %q back as %q (%v)", line, got, err)
	}
	if Quote("/usr/bin/x") != "/usr/bin/x" || Quote("a b") != "'a b'" || Quote("it's") != `'it'\''s'` {
		t.Fatal("Quote")
	}
}
