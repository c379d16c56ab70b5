// Package loop attaches, finds and detaches loop devices with the kernel's
// own interface (golang.org/x/sys/unix), because the hooks must never leave
// one behind and never attach one image twice.
//
// What it does that naive code does not:
//   - Attach uses LOOP_CONFIGURE (fd, flags, offset in one ioctl) and retries,
//     bounded and with jitter, when another process takes the free device
//     between LOOP_CTL_GET_FREE and the configure (EBUSY).
//   - The caller keeps the returned Device open until mount(2) has returned:
//     with autoclear, the last close of an unmounted device frees it.
//   - Detach does not trust LOOP_CLR_FD, which on a busy device answers
//     success and only arms autoclear: it checks that the device answers
//     ENXIO afterwards.
//   - Devices are identified by backing file (device + inode) and by the
//     disk sequence number, which changes each time a loop device is
//     reconfigured, so a device freed and reused by someone else is never
//     mistaken for ours.
package loop
