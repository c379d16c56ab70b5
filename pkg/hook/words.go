package hook

import (
	"fmt"
	"strings"
)

// LXC runs a hook line as /bin/sh -c "exec LINE ARGS...": the shell, not
// LXC, splits it into words. Tools that read hook lines (status, resize)
// must split them the same way, and tools that write them (init, resize)
// must quote what they write, or a path with a space or a "$(...)" breaks
// the container or runs a command.

// SplitWords splits a hook line into the words sh gives the program, for
// the subset people write in LXC configs: blanks between words, single
// quotes, double quotes (where \ escapes $ ` " and \), and backslash
// escapes outside quotes. Anything sh would expand or interpret ($, `,
// unquoted ; & | < > ( ) * ? [ ~ #) is refused with an error naming it
// rather than guessed at.
func SplitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	refuse := func(i int, what string) error {
		return fmt.Errorf("%q at offset %d: sh would %s; quote it with single quotes ('...')", line[i:i+1], i, what)
	}
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated single quote at offset %d", i)
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case ch == '"':
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				switch line[j] {
				case '\\':
					if j+1 < len(line) && strings.IndexByte("$`\"\\", line[j+1]) >= 0 {
						j++
					} else if j+1 < len(line) && line[j+1] == '\n' {
						j++
						continue
					}
				case '$':
					return nil, refuse(j, "expand it even inside double quotes")
				case '`':
					return nil, refuse(j, "run a command substitution even inside double quotes")
				}
				cur.WriteByte(line[j])
			}
			if j >= len(line) {
				return nil, fmt.Errorf("unterminated double quote at offset %d", i)
			}
			i = j
			inWord = true
		case ch == '\\':
			if i+1 >= len(line) {
				// LXC appends " NAME lxc TYPE": a final backslash would
				// escape the blank before them.
				return nil, fmt.Errorf("a backslash ends the line: sh would join it with the arguments LXC appends")
			}
			i++
			if line[i] != '\n' { // backslash-newline is a line continuation
				cur.WriteByte(line[i])
				inWord = true
			}
		case ch == '$':
			return nil, refuse(i, "expand it (a variable or $(command))")
		case ch == '`':
			return nil, refuse(i, "run a command substitution")
		case strings.IndexByte(";&|<>()\n", ch) >= 0:
			return nil, refuse(i, "take it as a command separator or redirection")
		case strings.IndexByte("*?[", ch) >= 0:
			return nil, refuse(i, "expand it as a file name pattern")
		case (ch == '~' || ch == '#') && !inWord:
			return nil, refuse(i, map[byte]string{'~': "expand it to a home directory", '#': "start a comment there"}[ch])
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// Quote quotes s for sh: as it is when it holds only characters sh takes
// literally, else in single quotes (a ' inside written as '\”).
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_@%+=:,./-", c) >= 0) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// JoinWords quotes each word and joins them with single blanks: a line
// SplitWords (and sh) reads back as words.
func JoinWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}
