package idmap

import "os"

// UserNS returns an open user namespace with mapping m, for idmapped
// mounts of a command (template's view of an unprivileged container's
// layer); the caller closes it. It is NewUserNS with this binary: one
// short-lived process, killed as soon as its namespace is open. (The hooks
// use PinnedUserNS, which makes no process once the mapping is pinned.)
func UserNS(m *Mapping) (*os.File, error) {
	return NewUserNS("/proc/self/exe", m)
}
