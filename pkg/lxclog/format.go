package lxclog

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
)

// Field keys every entry of a hook carries.
const (
	FieldContainer = "container"
	FieldHook      = "hook"
)

// LXCFormatter writes entries the way LXC writes its own lines, so they sort
// and grep with them:
//
//	lxc-hook-overlay web1 20261126120927.170 ERROR    overlay - pre-mount - lower "/x" does not exist
type LXCFormatter struct {
	Program  string // first column, where LXC has "lxc-start"
	Category string // where LXC has its source module
}

func (f *LXCFormatter) Format(e *logrus.Entry) ([]byte, error) {
	var b bytes.Buffer
	container, _ := e.Data[FieldContainer].(string)
	hook, _ := e.Data[FieldHook].(string)
	ts := e.Time.UTC()
	fmt.Fprintf(&b, "%s %s %s.%03d %-8s %s - %s - %s", f.Program, container,
		ts.Format("20060102150405"), ts.Nanosecond()/1e6, lxcName(e.Level), f.Category, hook, oneLine(e.Message))
	writeFields(&b, e)
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// StderrFormatter is for a person at a terminal:
//
//	lxc-hook-overlay: web1: pre-mount: error: lower "/x" does not exist
type StderrFormatter struct {
	Program string
}

func (f *StderrFormatter) Format(e *logrus.Entry) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(f.Program + ": ")
	if c, _ := e.Data[FieldContainer].(string); c != "" {
		b.WriteString(c + ": ")
	}
	if h, _ := e.Data[FieldHook].(string); h != "" {
		b.WriteString(h + ": ")
	}
	if e.Level != logrus.InfoLevel {
		b.WriteString(strings.ToLower(lxcName(e.Level)) + ": ")
	}
	b.WriteString(oneLine(e.Message))
	writeFields(&b, e)
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func writeFields(b *bytes.Buffer, e *logrus.Entry) {
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		if k != FieldContainer && k != FieldHook {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := fmt.Sprint(e.Data[k])
		if strings.ContainsAny(v, " \"=") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(b, " %s=%s", k, oneLine(v))
	}
}

// oneLine keeps an entry on one line: tools quote multi-line output
// (mke2fs, e2fsck) and LXC logs are read line by line.
func oneLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return strings.ReplaceAll(s, "\n", " | ")
}
