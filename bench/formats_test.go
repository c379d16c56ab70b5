package main

import (
	"strings"
	"testing"
)

// The formats step rewrites only its section; a full run keeps it.
func TestWithFormatsSection(t *testing.T) {
	full := "# Benchmarks\n\nstart/stop table\n"
	doc := withFormatsSection(full, "", "## Templates by format\nA\n")
	if !strings.HasPrefix(doc, full) || strings.Count(doc, formatsBegin) != 1 || !strings.Contains(doc, "\nA\n") {
		t.Fatalf("added: %q", doc)
	}
	doc2 := withFormatsSection(doc, "", "## Templates by format\nB\n")
	if strings.Contains(doc2, "\nA\n") || !strings.Contains(doc2, "\nB\n") || strings.Count(doc2, formatsBegin) != 1 || !strings.HasPrefix(doc2, full) {
		t.Fatalf("replaced: %q", doc2)
	}
	kept := withFormatsSection("# Benchmarks\n\nnew figures\n", doc2, "")
	if !strings.Contains(kept, "new figures") || !strings.Contains(kept, "\nB\n") || strings.Contains(kept, "start/stop table") {
		t.Fatalf("kept by a full run: %q", kept)
	}
	if got := withFormatsSection(full, full, ""); got != full {
		t.Fatalf("no section anywhere: %q", got)
	}
}

// The livecopy step's section and the formats step's live side by side:
// each run alone rewrites its own, a full run keeps both.
func TestTwoSections(t *testing.T) {
	full := "# Benchmarks\n\nstart/stop table\n"
	doc := withFormatsSection(full, "", "## Templates by format\nF\n")
	doc = withSection(doc, "", "## Copies\nL1\n", livecopyBegin, livecopyEnd)
	doc = withSection(doc, "", "## Copies\nL2\n", livecopyBegin, livecopyEnd)
	if strings.Contains(doc, "L1") || !strings.Contains(doc, "L2") || !strings.Contains(doc, "\nF\n") || strings.Count(doc, livecopyBegin) != 1 {
		t.Fatalf("livecopy alone: %q", doc)
	}
	doc = withFormatsSection(doc, "", "## Templates by format\nG\n")
	if !strings.Contains(doc, "L2") || !strings.Contains(doc, "\nG\n") || strings.Contains(doc, "\nF\n") {
		t.Fatalf("formats alone: %q", doc)
	}
	kept := withSection(withFormatsSection("# new\n", doc, ""), doc, "", livecopyBegin, livecopyEnd)
	if !strings.Contains(kept, "L2") || !strings.Contains(kept, "\nG\n") || strings.Contains(kept, "start/stop table") {
		t.Fatalf("full run: %q", kept)
	}
}
