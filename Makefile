# Build, install and package the hooks. Everything is static Go
# (CGO_ENABLED=0); man pages are generated from the binaries' own --help.
PREFIX   ?= /usr
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
# LXC's hook directory holds symlinks to the binaries: the paths container
# configs name keep working wherever the binaries live.
HOOKDIR  ?= $(PREFIX)/share/lxc/hooks
MANDIR   ?= $(PREFIX)/share/man/man1
GO       ?= go
BINS      = lxc-hook-overlay lxc-hook-loopimg lxc-hook-aufs
# Passed to scripts/build.sh and scripts/deb.sh where given:
# make deb MAINTAINER="Name <mail>" (VERSION, COMMIT, ARCH override git/dpkg).
export GO MAINTAINER VERSION COMMIT ARCH

.PHONY: all build man install deb test clean

all: build man

build:
	GO=$(GO) ./scripts/build.sh bin

man: build
	mkdir -p out/man
	for b in $(BINS); do bin/$$b manpage > out/man/$$b.1; done

# Each file is written under a temporary name and renamed over the old one,
# as dpkg does: a hook LXC starts during the upgrade runs the old binary or
# the new one, never a partial file.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(HOOKDIR) $(DESTDIR)$(MANDIR)
	for b in $(BINS); do \
		install -m 0755 bin/$$b $(DESTDIR)$(BINDIR)/.$$b.new && \
		mv -f $(DESTDIR)$(BINDIR)/.$$b.new $(DESTDIR)$(BINDIR)/$$b && \
		ln -sfr $(DESTDIR)$(BINDIR)/$$b $(DESTDIR)$(HOOKDIR)/.$$b.new && \
		mv -Tf $(DESTDIR)$(HOOKDIR)/.$$b.new $(DESTDIR)$(HOOKDIR)/$$b || exit 1; \
	done
	for b in $(BINS); do gzip -9n < out/man/$$b.1 > out/man/$$b.1.gz && install -m 0644 out/man/$$b.1.gz $(DESTDIR)$(MANDIR)/$$b.1.gz || exit 1; done

# The Debian package (dpkg-deb; see scripts/deb.sh).
deb: all
	MAKE="$(MAKE)" ./scripts/deb.sh

test:
	./scripts/test.sh

clean:
	rm -rf bin out
