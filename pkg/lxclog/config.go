package lxclog

import (
	"bufio"
	"io"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
)

// ConfigLog is what a container config says about logging.
type ConfigLog struct {
	File        string // lxc.log.file
	Level       string // lxc.log.level
	ConsoleFile string // lxc.console.logfile, never mistaken for the log
}

// ParseConfig reads the lxc.log.* keys of an LXC config. Later lines win,
// as in LXC; lxc.include is not followed (log settings live in the
// container's own config).
func ParseConfig(r io.Reader) ConfigLog {
	var c ConfigLog
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "lxc.log.file":
			c.File = val
		case "lxc.log.level":
			c.Level = val
		case "lxc.console.logfile":
			c.ConsoleFile = val
		}
	}
	return c
}

// lxcLevels are LXC's priorities in order, as lxc.log.level numbers them.
var lxcLevels = []string{"TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR", "CRIT", "ALERT", "FATAL"}

// ParseLevel maps an LXC priority (name or number, any case) or a logrus
// level name to a logrus level.
func ParseLevel(s string) (logrus.Level, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < len(lxcLevels) {
		s = lxcLevels[n]
	}
	switch s {
	case "TRACE":
		return logrus.TraceLevel, true
	case "DEBUG":
		return logrus.DebugLevel, true
	case "INFO", "NOTICE":
		return logrus.InfoLevel, true
	case "WARN", "WARNING":
		return logrus.WarnLevel, true
	case "ERROR", "CRIT", "ALERT", "FATAL":
		return logrus.ErrorLevel, true
	}
	return 0, false
}

// lxcName is LXC's spelling of a logrus level in a log line.
func lxcName(l logrus.Level) string {
	switch l {
	case logrus.TraceLevel:
		return "TRACE"
	case logrus.DebugLevel:
		return "DEBUG"
	case logrus.InfoLevel:
		return "INFO"
	case logrus.WarnLevel:
		return "WARN"
	case logrus.ErrorLevel:
		return "ERROR"
	default:
		return "CRIT"
	}
}
