package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
)

// unprivBase is the host ID the "-unpriv" variants map their root to: the
// first block of 65536 IDs from 100000 up that nobody (root included) has
// in /etc/subuid, /etc/subgid, /etc/passwd or /etc/group, since pre-start
// refuses a mapping onto another user's IDs.
var unprivBase uint32 = 100000

// releaseIDs takes back the range setupIDs gave root, if any.
var releaseIDs = func() {}

// setupIDs picks unprivBase. Where newuidmap and newgidmap are installed
// (package uidmap, which lxc Recommends and scripts/deps.sh installs), LXC
// maps IDs through them even when root starts the container, and they
// allow only root's own ranges: root then gets the block for the run.
func setupIDs() {
	h, err := idmap.ReadHost(idmap.SystemFiles)
	must(err)
	h.UIDs = append(h.UIDs, h.RootUIDs...)
	h.GIDs = append(h.GIDs, h.RootGIDs...)
	for b := uint64(100000); b+idmap.MinRange-1 <= idmap.MaxID; b += idmap.MinRange {
		m := &idmap.Mapping{UID: []idmap.Range{{Outside: uint32(b), Count: idmap.MinRange}}, GID: []idmap.Range{{Outside: uint32(b), Count: idmap.MinRange}}}
		if len(h.Conflicts(m)) == 0 {
			unprivBase = uint32(b)
			break
		}
	}
	if !newxidmap() {
		return
	}
	must(idmap.AddRange(idmap.SystemFiles, "root", unprivBase, idmap.MinRange))
	releaseIDs = func() {
		if err := idmap.RemoveRange(idmap.SystemFiles, "root", unprivBase, idmap.MinRange); err != nil {
			fmt.Fprintf(os.Stderr, "bench: taking root:%d:%d back out of /etc/subuid and /etc/subgid: %v\n", unprivBase, idmap.MinRange, err)
		}
	}
}

// newxidmap reports whether LXC maps IDs through newuidmap and newgidmap.
func newxidmap() bool {
	_, errU := exec.LookPath("newuidmap")
	_, errG := exec.LookPath("newgidmap")
	return errU == nil && errG == nil
}
