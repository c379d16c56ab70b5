package admin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/lxc-hooks/lxc-hooks/pkg/template"
)

const completionAbout = `Writes the bash completion of this binary to stdout: its commands, each
command's flags, the values of those that take a file, a directory, a
format, and container names (of the LXC path given with -P on the line,
else LXC's lxc.lxcpath). It is generated from the same command table and
flag definitions the commands run with, so it cannot drift from them. The
package installs it as /usr/share/bash-completion/completions/%s;
elsewhere: source <(%s completion bash).`

// Positional argument kinds of a command, by position; the last repeats
// when it ends in "...".
var commandArgs = map[string][]string{
	"init":         {"new"},
	"status":       {"container..."},
	"resize":       {"container"},
	"release":      {"container"},
	"copy":         {"container", "new"},
	"template":     {"file"},
	"convert":      {"container"},
	"migrate":      {"container..."},
	"lxc-template": {},
	"completion":   {"word:bash"},
	"manpage":      {},
}

// valueKinds says what each flag value's placeholder (the `NAME` in its
// usage) completes to; a placeholder missing here fails a unit test, so a
// new flag cannot be left without a decision.
var valueKinds = map[string]string{
	"FILE":     "file",
	"SOURCE":   "file+container",
	"LXCPATH":  "dir",
	"DIR":      "dir",
	"FORMAT":   "word:" + strings.Join(template.FormatNames(), " "),
	"FS":       "word:overlay",
	"SIZE":     "",
	"DURATION": "",
	"NAME":     "",
	"UID":      "",
	"GID":      "",
}

// completionFlags is every flag of command c of binary k, as its flag set
// defines it: the command runs with its flags parsed, up to the parse,
// which hands the flag set over and stops it there.
func completionFlags(k Kind, c command) []*flag.Flag {
	var got *flag.FlagSet
	inspectFlags = func(fs *flag.FlagSet) { got = fs }
	defer func() { inspectFlags = nil }()
	c.run(k, nil, io.Discard, io.Discard)
	var out []*flag.Flag
	if got != nil {
		got.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	}
	return out
}

// flagWord is how a flag is offered: "-P" for a one-letter name, else
// "--name" (Go's flag package takes both forms).
func flagWord(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// aliasOf is the flag f's usage says it is the same as ("same as -P"),
// or f.
func aliasOf(fs []*flag.Flag, f *flag.Flag) *flag.Flag {
	if name, ok := strings.CutPrefix(f.Usage, "same as -"); ok {
		for _, g := range fs {
			if g.Name == strings.TrimLeft(name, "-") {
				return g
			}
		}
	}
	return f
}

// isBool reports whether f takes no value.
func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func cmdCompletion(k Kind, args []string, stdout, _ io.Writer) error {
	fs := flags(k, "completion", "bash", fmt.Sprintf(completionAbout, k.Program, k.Program), stdout)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "bash" {
		return usageError{errors.New("give the shell: bash (the only one written)")}
	}
	return writeBashCompletion(k, stdout)
}

// writeBashCompletion writes the completion script of binary k.
func writeBashCompletion(k Kind, w io.Writer) error {
	fn := "_" + strings.NewReplacer("-", "_").Replace(k.Program)
	var b strings.Builder
	fmt.Fprintf(&b, "# bash completion for %s: written by \"%s completion bash\" from the\n# binary's own command table and flag definitions (do not edit).\n\n", k.Program, k.Program)
	// Helpers: container names under an LXC path, files, directories.
	fmt.Fprintf(&b, `%[1]s_containers() {
	local p=$1 c
	[[ -n $p ]] || p=$(lxc-config lxc.lxcpath 2>/dev/null)
	[[ -n $p ]] || p=/var/lib/lxc
	local names=()
	for c in "$p"/*/config; do
		[[ -f $c ]] || continue
		c=${c%%/config}
		names+=("${c##*/}")
	done
	COMPREPLY+=($(compgen -W "${names[*]}" -- "$cur"))
}

%[1]s_files() {
	compopt -o filenames 2>/dev/null
	local IFS=$'\n'
	COMPREPLY+=($(compgen -f -- "$cur"))
}

%[1]s_dirs() {
	compopt -o filenames 2>/dev/null
	local IFS=$'\n'
	COMPREPLY+=($(compgen -d -- "$cur"))
}

# %[1]s_argn sets n to the place of the word under the cursor among the
# command's positional arguments: the words after the command that are
# neither flags nor the values of the flags in $1 (" -P --P ... ").
%[1]s_argn() {
	local i w seen="" skip=""
	n=0
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ -n $skip ]]; then
			skip=""
			[[ $w == "=" ]] && skip=1
			continue
		fi
		if [[ -z $seen ]]; then
			[[ $w == "$cmd" ]] && seen=1
			continue
		fi
		case $w in
		-*=*) ;;
		-*) [[ $1 == *" $w "* ]] && skip=1 ;;
		*) ((n++)) ;;
		esac
	done
}

%[1]s_complete_kind() {
	case $1 in
	container | container...) %[1]s_containers "$lxcpath" ;;
	file) %[1]s_files ;;
	dir) %[1]s_dirs ;;
	file+container) %[1]s_files; %[1]s_containers "$lxcpath" ;;
	word:*) COMPREPLY+=($(compgen -W "${1#word:}" -- "$cur")) ;;
	esac
}

`, fn)
	fmt.Fprintf(&b, "%s() {\n", fn)
	b.WriteString(`	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local i w cmd="" lxcpath="" flag=""
	COMPREPLY=()
	# --flag=value: bash splits it at "=" (COMP_WORDBREAKS).
	if [[ $cur == "=" ]]; then
		flag=$prev cur=""
	elif [[ $prev == "=" && $COMP_CWORD -ge 2 ]]; then
		flag=${COMP_WORDS[COMP_CWORD-2]}
	fi
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		-P | --P | -lxcpath | --lxcpath)
			[[ ${COMP_WORDS[i+1]} == "=" ]] && lxcpath=${COMP_WORDS[i+2]} || lxcpath=${COMP_WORDS[i+1]}
			;;
		-P=* | --P=* | -lxcpath=* | --lxcpath=*) lxcpath=${w#*=} ;;
		esac
		if [[ -z $cmd && $w != -* ]]; then
			cmd=$w
		fi
	done
`)
	cmds := commands(k)
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
	}
	fmt.Fprintf(&b, `	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "%s --help --version" -- "$cur"))
		return
	fi
	case $cmd in
`, strings.Join(names, " "))
	for _, c := range cmds {
		fs := completionFlags(k, c)
		var words, valued []string
		kinds := map[string][]string{} // kind -> flag words
		for _, f := range fs {
			word := flagWord(f.Name)
			words = append(words, word)
			if isBool(f) {
				continue
			}
			// Both spellings take the value.
			valued = append(valued, "-"+f.Name, "--"+f.Name)
			ph, _ := flag.UnquoteUsage(aliasOf(fs, f))
			kind, ok := valueKinds[ph]
			if !ok {
				return fmt.Errorf("%s %s --%s: its value %q has no completion kind (valueKinds)", k.Program, c.name, f.Name, ph)
			}
			kinds[kind] = append(kinds[kind], "-"+f.Name, "--"+f.Name)
		}
		sort.Strings(words)
		fmt.Fprintf(&b, "\t%s)\n", c.name)
		// A flag's value.
		b.WriteString("\t\t[[ -n $flag ]] || flag=$prev\n\t\tcase $flag in\n")
		var ks []string
		for kind := range kinds {
			ks = append(ks, kind)
		}
		sort.Strings(ks)
		for _, kind := range ks {
			fmt.Fprintf(&b, "\t\t%s)\n\t\t\t%s_complete_kind %q\n\t\t\treturn\n\t\t\t;;\n", strings.Join(kinds[kind], " | "), fn, kind)
		}
		b.WriteString("\t\tesac\n")
		fmt.Fprintf(&b, "\t\tif [[ $cur == -* ]]; then\n\t\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\t\treturn\n\t\tfi\n", strings.Join(append(words, "--help"), " "))
		// The positional argument's place: words after the command that
		// are neither flags nor their values.
		args := commandArgs[c.name]
		if len(args) > 0 {
			fmt.Fprintf(&b, "\t\tlocal n\n\t\t%s_argn %q\n", fn, " "+strings.Join(valued, " ")+" ")
			var cases []string
			for i, a := range args {
				if strings.HasSuffix(a, "...") {
					cases = append(cases, fmt.Sprintf("\t\t*) %s_complete_kind %q ;;\n", fn, a))
					break
				}
				cases = append(cases, fmt.Sprintf("\t\t%d) %s_complete_kind %q ;;\n", i, fn, a))
			}
			b.WriteString("\t\tcase $n in\n" + strings.Join(cases, "") + "\t\tesac\n")
		}
		b.WriteString("\t\t;;\n")
	}
	b.WriteString("\tesac\n}\n\n")
	fmt.Fprintf(&b, "complete -F %s %s\n", fn, k.Program)
	_, err := io.WriteString(w, b.String())
	return err
}
