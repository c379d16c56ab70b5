// Package layer knows the layers a hook stacks: read-only lowers (a
// directory, or a filesystem image recognised by its magic number) and the
// writable layer's on-disk format marker, which keeps a layer written by
// AuFS from being mounted by overlayfs and the reverse.
package layer
