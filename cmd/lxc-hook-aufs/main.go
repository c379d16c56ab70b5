// Command lxc-hook-aufs is an LXC hook: a read-only template with a
// writable AuFS layer in a host directory, for kernels that have AuFS.
// See --help.
package main

import (
	"os"

	"github.com/lxc-hooks/lxc-hooks/pkg/dirlayer"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
)

func main() {
	os.Exit(runner.Main(&dirlayer.Aufs{}, os.Args[1:], os.Stdout, os.Stderr))
}
