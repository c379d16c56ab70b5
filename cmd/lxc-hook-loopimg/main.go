// Command lxc-hook-loopimg is an LXC hook: a read-only template with a
// writable overlayfs layer inside a fixed-size ext4 image on a loop device,
// which caps the container's disk use. Run by hand, it
// has operator commands (init, status, copy, template, ...): --help lists
// them, from package admin's command table.
package main

import (
	"os"

	"github.com/lxc-hooks/lxc-hooks/pkg/admin"
	"github.com/lxc-hooks/lxc-hooks/pkg/loopimg"
)

func main() {
	os.Exit(admin.Run(&loopimg.Backend{}, true))
}
