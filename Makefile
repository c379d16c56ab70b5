# Build, install and package the hooks. Everything is static Go
# (CGO_ENABLED=0); man pages are generated from the binaries' own --help.
PREFIX   ?= /usr
DESTDIR  ?=
HOOKDIR  ?= $(PREFIX)/share/lxc/hooks
MANDIR   ?= $(PREFIX)/share/man/man1
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo 0.0.0)
DEBVER   ?= 0.1.0+git$(shell echo "$(VERSION)" | sed -e 's/[^A-Za-z0-9.~]/./g')
ARCH     ?= $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
BINS      = lxc-hook-overlay lxc-hook-loopimg lxc-hook-aufs

.PHONY: all build man install deb test clean

all: build man

build:
	GO=$(GO) ./scripts/build.sh bin

man: build
	mkdir -p out/man
	for b in $(BINS); do bin/$$b manpage > out/man/$$b.1; done

install: all
	install -d $(DESTDIR)$(HOOKDIR) $(DESTDIR)$(MANDIR)
	for b in $(BINS); do install -m 0755 bin/$$b $(DESTDIR)$(HOOKDIR)/$$b; done
	for b in $(BINS); do install -m 0644 out/man/$$b.1 $(DESTDIR)$(MANDIR)/$$b.1; gzip -9nf $(DESTDIR)$(MANDIR)/$$b.1; done

# A Debian package with the standard tools: dpkg-deb.
deb: all
	rm -rf out/deb out/*.deb && mkdir -p out/deb/DEBIAN
	$(MAKE) install DESTDIR=$(CURDIR)/out/deb PREFIX=/usr
	mkdir -p out/deb/usr/bin
	for b in $(BINS); do ln -sf ../share/lxc/hooks/$$b out/deb/usr/bin/$$b; done
	mkdir -p out/deb/usr/share/doc/lxc-hooks && install -m 0644 README.md out/deb/usr/share/doc/lxc-hooks/README.md
	printf '%s\n' \
	  'Package: lxc-hooks' \
	  'Version: $(DEBVER)' \
	  'Architecture: $(ARCH)' \
	  'Maintainer: lxc-hooks developers <lxc-hooks@localhost>' \
	  'Depends: lxc, e2fsprogs' \
	  'Section: admin' \
	  'Priority: optional' \
	  'Description: writable layers over read-only LXC templates' \
	  ' LXC hooks that boot containers from read-only templates (directories or' \
	  ' squashfs/erofs/ext4 images) with a writable overlayfs layer in a directory' \
	  ' or in a fixed-size ext4 image that caps the container'"'"'s disk use, and that' \
	  ' leave nothing mounted or attached after the container stops.' \
	  > out/deb/DEBIAN/control
	dpkg-deb --root-owner-group --build out/deb out/lxc-hooks_$(DEBVER)_$(ARCH).deb

test:
	./scripts/test.sh

clean:
	rm -rf bin out
