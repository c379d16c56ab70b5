// Command lxc-hook-overlay is an LXC hook: a read-only template with a
// writable overlayfs layer in a host directory. Run by hand, it has the
// operator commands init, status and release. See --help.
package main

import (
	"os"

	"github.com/lxc-hooks/lxc-hooks/pkg/admin"
	"github.com/lxc-hooks/lxc-hooks/pkg/dirlayer"
)

func main() {
	os.Exit(admin.Run(&dirlayer.Overlay{}, false))
}
