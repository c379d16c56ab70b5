// Command lxc-hook-loopimg is an LXC hook: a read-only template with a
// writable overlayfs layer inside a fixed-size ext4 image on a loop device,
// which caps the container's disk use. See --help.
package main

import (
	"os"

	"github.com/lxc-hooks/lxc-hooks/pkg/loopimg"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
)

func main() {
	os.Exit(runner.Main(&loopimg.Backend{}, os.Args[1:], os.Stdout, os.Stderr))
}
