// Package layer knows the layers a hook stacks: read-only lowers (a
// directory, or a filesystem image recognised by its magic number) and the
// writable layer's on-disk format marker, which keeps a layer written by
// AuFS from being mounted by overlayfs and the reverse.
//
// Lowers must pass package trust's rule (root's alone, with every
// directory above them): a template a user can replace makes host root
// mount a filesystem image the user crafted. The marker and the owner
// record are read and written through the layer directory's fd (a
// trust.Dir), never through a link.
package layer
