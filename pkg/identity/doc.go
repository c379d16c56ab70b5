// Package identity gives each container its own identity in its writable
// layer: its name in /etc/hostname (and on the 127.0.1.1 line of
// /etc/hosts), and a machine-id of its own, as LXC's own templates give
// each container they create. Every container of one template would
// otherwise boot with the template's hostname and machine-id, and every copy
// with its source's.
//
// The machine-id is not made here: /etc/machine-id is emptied, and systemd
// makes a new one at the next boot and writes it back (machine-id(5),
// systemd 252: an empty file is not a first boot, so no presets are applied
// and no first-boot units run; a missing file or "uninitialized" would be
// one). A template built by the template command carries an empty one
// already.
//
// When: at every start, after the union is mounted and before the
// container runs, the layer's record (RecordName, beside its marker, out
// of the container's reach) says which container the layer last belonged
// to. Only a new layer (no record, nothing in upper/ yet), a copy (the
// record names another config that still exists) or a moved or renamed
// container (the recorded config is gone) is changed; a layer of this very
// container is left alone, so what the container changed itself stays. A
// layer from before the record existed is adopted as it is.
//
// How: through the mounted union, never into a lower, so the template is
// never written; every path is opened with openat2 RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS relative to the union's root, so a link the
// container planted is never followed out of it. overlayfs copies a
// template file up into the layer with its owner and mode.
package identity
