// Command lxc-hook-aufs is an LXC hook: a read-only template with a
// writable AuFS layer in a host directory, for kernels that have AuFS. Run by hand, it
// has operator commands (init, status, copy, template, ...): --help lists
// them, from package admin's command table.
package main

import (
	"os"

	"github.com/lxc-hooks/lxc-hooks/pkg/admin"
	"github.com/lxc-hooks/lxc-hooks/pkg/dirlayer"
)

func main() {
	os.Exit(admin.Run(&dirlayer.Aufs{}, false))
}
