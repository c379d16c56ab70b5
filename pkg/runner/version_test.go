package runner

import "testing"

func TestVersionLine(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "0.2.0+git5.1a2b3c4", "1a2b3c4d5e6f-dirty"
	got := VersionLine("lxc-hook-loopimg")
	want := "lxc-hook-loopimg 0.2.0+git5.1a2b3c4 (commit 1a2b3c4d5e6f-dirty, "
	if len(got) < len(want) || got[:len(want)] != want || got[len(got)-1] != ')' {
		t.Fatalf("got %q, want %q...)", got, want)
	}
}
