// Command lxc-hook-overlay is an LXC hook: a read-only template with a
// writable overlayfs layer in a host directory. See --help.
package main

import (
	"os"

	"github.com/lxc-hooks/lxc-hooks/pkg/dirlayer"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
)

func main() {
	os.Exit(runner.Main(&dirlayer.Overlay{}, os.Args[1:], os.Stdout, os.Stderr))
}
