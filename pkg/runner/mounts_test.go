package runner

import (
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func parseMounts(t *testing.T, s string) []*mountinfo.Info {
	t.Helper()
	ms, err := mountinfo.GetMountsFromReader(strings.NewReader(strings.TrimSpace(s)+"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}
