package runner

import (
	"runtime"
	"runtime/debug"
)

// Commit is the git commit the binary was built from, set at build time
// with -ldflags "-X ...runner.Commit=HASH" (scripts/build.sh). Left empty,
// the commit Go recorded itself (go build in a git checkout) is used.
var Commit = ""

// VersionLine is what --version prints: the program, the version a
// sysadmin compares with the package's, and the commit and Go release a
// bug report needs.
func VersionLine(program string) string {
	commit := Commit
	if commit == "" {
		commit = buildCommit()
	}
	line := program + " " + Version
	if commit != "" {
		line += " (commit " + commit + ", " + runtime.Version() + ")"
	}
	return line
}

// buildCommit reads the VCS stamp of go build; "" where there is none
// (go test binaries, builds outside git, -buildvcs=false).
func buildCommit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" && modified == "true" {
		rev += "-dirty"
	}
	return rev
}
