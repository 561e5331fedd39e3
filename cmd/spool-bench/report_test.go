package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const reportLines = `{"scenario":"ingest","figure":"c=64 writes/s vs durable no-op","value":9057,"unit":"/s","baseline":"durable no-op","baseline_value":16000,"ratio":0.566}
{"scenario":"drain","figure":"25000 rows drained, rows/s","value":41900.4,"unit":"rows/s","baseline":"raw batches of 500","baseline_value":139000,"ratio":0.301}
`

// TestReportIntoMarks: report --into replaces what lies between the
// markers with the figures, and leaves the rest of the document alone.
func TestReportIntoMarks(t *testing.T) {
	t.Parallel()
	figs := writeFile(t, "e.jsonl", reportLines)
	doc := writeFile(t, "DOC.md", "# Title\n\nbefore\n"+markBegin+"\nold table\n"+markEnd+"\nafter\n")
	var out, errs bytes.Buffer
	if err := reportCommand([]string{"--into", doc, "embedded=" + figs}, &out, &errs); err != nil {
		t.Fatal(err, errs.String())
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"# Title\n\nbefore\n" + markBegin, "### embedded", "| drain | 25000 rows drained, rows/s | 41900 | rows/s | raw batches of 500 | 139000 | 0.30 |", markEnd + "\nafter\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("the document lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old table") {
		t.Errorf("the old table is still there:\n%s", got)
	}
}

// TestReportHeadline: the headline table puts runs side by side, with the
// ratio where asked, and a dash for a figure a run lacks.
func TestReportHeadline(t *testing.T) {
	t.Parallel()
	a := writeFile(t, "a.jsonl", reportLines)
	b := writeFile(t, "b.jsonl", `{"scenario":"telemetry","figure":"highest rate sustained, rows/s","value":150000,"unit":"1/s","baseline":"COPY per 500","baseline_value":200000,"ratio":0.75}`+"\n")
	var out, errs bytes.Buffer
	if err := reportCommand([]string{"--headline", "embedded=" + a, "servers=" + b}, &out, &errs); err != nil {
		t.Fatal(err, errs.String())
	}
	for _, want := range []string{"| figure | embedded | servers |", "| writes/s at 64 writers, and the ratio to the durable no-op | 9057 (0.57) | — |", "| telemetry: the highest rate sustained (rows/s), and the ratio to raw batches of 500 | — | 150000 (0.75) |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the headline table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestReportRefusesBadInput: a document without markers, a file that is
// not the bench's JSON, an argument that is not LABEL=FILE.
func TestReportRefusesBadInput(t *testing.T) {
	t.Parallel()
	figs := writeFile(t, "e.jsonl", reportLines)
	for name, args := range map[string][]string{
		"no markers":    {"--into", writeFile(t, "DOC.md", "no markers here\n"), "e=" + figs},
		"not JSON":      {"e=" + writeFile(t, "bad.jsonl", "not json\n")},
		"empty":         {"e=" + writeFile(t, "empty.jsonl", "")},
		"no label":      {figs},
		"no run at all": {},
	} {
		var out, errs bytes.Buffer
		if err := reportCommand(args, &out, &errs); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
