package admin

import "testing"

func TestRewrite(t *testing.T) {
	in := `# Container web1 in /var/lib/lxc/web1
lxc.uts.name = web1
lxc.rootfs.path = dir:/var/lib/lxc/web1/rootfs
lxc.log.file = /var/lib/lxc/web1/web1.log
lxc.hook.pre-mount = /usr/share/lxc/hooks/lxc-hook-loopimg --config /var/lib/lxc/web1/config --lower /var/lib/lxc/web10/t.sqfs --image /srv/l/web1.img
lxc.mount.entry = /var/lib/lxc/web1x mnt none bind 0 0
`
	r := rewrite{SrcDir: "/var/lib/lxc/web1", DstDir: "/var/lib/lxc/web2", Name: "web2", OldLayer: "/srv/l/web1.img", NewLayer: "/var/lib/lxc/web2/layer.img"}
	want := `# Container web1 in /var/lib/lxc/web1
lxc.uts.name = web2
lxc.rootfs.path = dir:/var/lib/lxc/web2/rootfs
lxc.log.file = /var/lib/lxc/web2/web1.log
lxc.hook.pre-mount = /usr/share/lxc/hooks/lxc-hook-loopimg --config /var/lib/lxc/web2/config --lower /var/lib/lxc/web10/t.sqfs --image /var/lib/lxc/web2/layer.img
lxc.mount.entry = /var/lib/lxc/web1x mnt none bind 0 0
`
	if got := r.apply(in); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// A snapshot: the new directory is below the old one, and LXC has
	// rewritten the rootfs already.
	snap := rewrite{SrcDir: "/l/web1", DstDir: "/l/web1/snaps/snap0", KeepRootfs: true}
	in = "lxc.rootfs.path = dir:/l/web1/snaps/snap0/rootfs\nlxc.hook.clone = /l/web1/snaps/snap0/h --config /l/web1/config\n"
	want = "lxc.rootfs.path = dir:/l/web1/snaps/snap0/rootfs\nlxc.hook.clone = /l/web1/snaps/snap0/h --config /l/web1/snaps/snap0/config\n"
	if got := snap.apply(in); got != want {
		t.Errorf("snapshot: got\n%s\nwant\n%s", got, want)
	}
}
