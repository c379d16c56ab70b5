package mount

import (
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
