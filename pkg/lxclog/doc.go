// Package lxclog sends the hooks' log lines where an LXC user reads them:
// the container's LXC log file, in LXC's own line format and at LXC's
// configured level, and stderr.
//
// LXC captures a hook's stderr only at DEBUG level, so stderr alone would
// hide a refused start from a user with the usual INFO log.
package lxclog
