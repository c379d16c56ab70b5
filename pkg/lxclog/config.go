package lxclog

import (
	"io"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
)

// ConfigLog is what a container config says about logging.
type ConfigLog struct {
	File        string // lxc.log.file
	Level       string // lxc.log.level
	ConsoleFile string // lxc.console.logfile, never mistaken for the log
}

// ParseConfig reads the lxc.log.* keys of an LXC config; later lines win,
// as in LXC.
func ParseConfig(r io.Reader) ConfigLog {
	v := hook.ConfigValues(r, "lxc.log.file", "lxc.log.level", "lxc.console.logfile")
	return ConfigLog{
		File:        hook.Last(v["lxc.log.file"]),
		Level:       hook.Last(v["lxc.log.level"]),
		ConsoleFile: hook.Last(v["lxc.console.logfile"]),
	}
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
