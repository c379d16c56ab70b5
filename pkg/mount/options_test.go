package mount

import (
	"fmt"
	"strings"
	"testing"
)

func TestOverlayParamsLegacy(t *testing.T) {
	o := Overlay{Source: "lxc-hook-overlay", Lowers: []string{"/run/a", "/srv/b"}, Upper: "/u/upper", Work: "/u/work"}
	ps, err := o.Params(false)
	if err != nil {
		t.Fatal(err)
	}
	got := JoinParams(ps)
	want := "source=lxc-hook-overlay,lowerdir=/run/a:/srv/b,upperdir=/u/upper,workdir=/u/work"
	if got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestOverlayParamsLowerdirPlusKeepsOrderAndSpecials(t *testing.T) {
	o := Overlay{Source: "s", Lowers: []string{"/t/a:b", "/t/c,d"}, Upper: "/u/up", Work: "/u/wk"}
	ps, err := o.Params(true)
	if err != nil {
		t.Fatal(err)
	}
	if ps[1].Key != "lowerdir+" || ps[1].Value != "/t/a:b" || ps[2].Value != "/t/c,d" {
		t.Fatalf("lowers out of order or altered: %v", ps)
	}
}

func TestOverlayParamsRefusals(t *testing.T) {
	cases := []struct {
		o    Overlay
		plus bool
		want string
	}{
		{Overlay{Lowers: []string{"/a:b"}, Upper: "/u", Work: "/w"}, false, `lower "/a:b" contains ":"`},
		{Overlay{Lowers: []string{"/a"}, Upper: "/u,x", Work: "/w"}, false, `upper "/u,x" contains ","`},
		{Overlay{Lowers: []string{`/a\b`}, Upper: "/u", Work: "/w"}, true, `contains "\\"`},
		{Overlay{Lowers: nil, Upper: "/u", Work: "/w"}, true, "at least one lower"},
		{Overlay{Lowers: []string{"/a"}, Upper: "", Work: "/w"}, true, "upper is empty"},
	}
	for _, c := range cases {
		_, err := c.o.Params(c.plus)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: want %q, got %v", c.o, c.want, err)
		}
	}
}

func TestAufsData(t *testing.T) {
	a := Aufs{Upper: "/l/upper", Lowers: []string{"/run/x/lower0", "/srv/t"}, Xino: "/l/.aufs.xino"}
	d, err := a.Data()
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 1 || d[0] != "br=/l/upper=rw:/run/x/lower0=ro+wh:/srv/t=ro+wh,xino=/l/.aufs.xino" {
		t.Fatalf("got %q", d)
	}
}

func TestAufsDataAppendsWhatDoesNotFit(t *testing.T) {
	var lowers []string
	for i := 0; i < 60; i++ {
		lowers = append(lowers, fmt.Sprintf("/srv/templates/a-rather-long-directory-name-for-layer-number-%03d/%s", i, strings.Repeat("x", 20)))
	}
	d, err := Aufs{Upper: "/u", Lowers: lowers, Xino: "/x"}.Data()
	if err != nil {
		t.Fatal(err)
	}
	if len(d) < 2 || len(d[0]) > aufsDataLimit {
		t.Fatalf("%d strings, first %d bytes", len(d), len(d[0]))
	}
	// Every lower appears once, in order, as ro+wh.
	all := strings.Join(d, ",")
	last := -1
	for _, l := range lowers {
		i := strings.Index(all, l+"=ro+wh")
		if i < 0 || i < last {
			t.Fatalf("lower %s missing or out of order", l)
		}
		last = i
	}
	if !strings.HasPrefix(d[1], "append:") {
		t.Fatalf("remount data %q", d[1])
	}
}

func TestAufsDataRefusals(t *testing.T) {
	for _, a := range []Aufs{
		{Upper: "/u:x", Lowers: []string{"/l"}, Xino: "/x"},
		{Upper: "/u", Lowers: []string{"/l=ro"}, Xino: "/x"},
		{Upper: "/u", Lowers: []string{"/a,b"}, Xino: "/x"},
		{Upper: "/u", Lowers: nil, Xino: "/x"},
	} {
		if _, err := a.Data(); err == nil {
			t.Errorf("%+v accepted", a)
		}
	}
	_, err := Aufs{Upper: "/u", Lowers: []string{"/t/a=b"}, Xino: "/x"}.Data()
	if err == nil || !strings.Contains(err.Error(), `lower "/t/a=b" contains "="`) {
		t.Fatalf("got %v", err)
	}
}
