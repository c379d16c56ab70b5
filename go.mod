module github.com/lxc-hooks/lxc-hooks

go 1.22

require (
	github.com/moby/sys/mountinfo v0.7.2
	github.com/sirupsen/logrus v1.9.3
	golang.org/x/sys v0.30.0
)
