package telemetry

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spoolgw/spool/internal/schema"
)

func spillTable() *schema.Table {
	return schema.NewTable("readings", []*schema.Column{
		{Name: "id", Type: "integer", Kind: schema.Integer, NotNull: true},
		{Name: "sensor", Type: "text", Kind: schema.Text},
		{Name: "value", Type: "real", Kind: schema.Real},
	}, []string{"id"})
}

func openTestSpill(t *testing.T, dir string, maxBytes int64, maxFiles int) *spill {
	t.Helper()
	s, err := openSpill(dir, spillTable(), maxBytes, maxFiles, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

func rowsFrom(from, n int) []sample {
	out := make([]sample, n)
	for i := range out {
		out[i] = sample{int64(from + i), "s-" + string(rune('a'+i%26)), float64(from+i) / 4}
	}
	return out
}

// drain replays everything, n records a chunk, and returns the rows.
func drain(t *testing.T, s *spill, n int) []sample {
	t.Helper()
	var out []sample
	for {
		ch := s.next(n)
		if ch == nil {
			return out
		}
		if len(ch.rejected) > 0 {
			t.Fatalf("rejected: %v", ch.rejected)
		}
		out = append(out, ch.rows...)
		if err := s.commit(ch); err != nil {
			t.Fatal(err)
		}
	}
}

func csvFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSpillAppendReplay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTestSpill(t, dir, 1<<20, 4)
	want := rowsFrom(0, 25)
	for i := 0; i < 25; i += 10 {
		if err := s.append(want[i:min(i+10, 25)]); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.stats(); st.files != 1 || st.pending != 25 || st.bytes == 0 {
		t.Fatalf("stats %+v", st)
	}
	files := csvFiles(t, dir)
	if len(files) != 1 || !strings.Contains(filepath.Base(files[0]), "-") {
		t.Fatalf("files %v", files)
	}
	body, _ := os.ReadFile(files[0])
	if first, _, _ := strings.Cut(string(body), "\n"); first != "id,sensor,value" {
		t.Fatalf("header %q", first)
	}
	got := drain(t, s, 7)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed %v\nwant %v", got, want)
	}
	if st := s.stats(); st != (spillStats{}) {
		t.Fatalf("after replay: %+v", st)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Fatalf("left behind: %v", m)
	}
	// Appending after a replay starts a new file.
	if err := s.append(rowsFrom(100, 3)); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, s, 10); !reflect.DeepEqual(got, rowsFrom(100, 3)) {
		t.Fatalf("second round %v", got)
	}
}

func TestSpillRotatesAndCaps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTestSpill(t, dir, 200, 3) // ~200 bytes a file: a few batches each
	var all []sample
	for i := range 20 {
		b := rowsFrom(i*4, 4)
		all = append(all, b...)
		if err := s.append(b); err != nil {
			t.Fatal(err)
		}
		if n := len(csvFiles(t, dir)); n > 3 {
			t.Fatalf("%d files, cap 3", n)
		}
	}
	st := s.stats()
	if st.files != 3 || st.dropped == 0 {
		t.Fatalf("stats %+v: want 3 files and some dropped", st)
	}
	got := drain(t, s, 5)
	if int64(len(got))+int64(st.dropped) != int64(len(all)) {
		t.Fatalf("replayed %d + dropped %d != appended %d", len(got), st.dropped, len(all))
	}
	// What is left is the newest rows, in order: the oldest went first.
	if !reflect.DeepEqual(got, all[len(all)-len(got):]) {
		t.Fatalf("replayed %v\nwant the newest %d", got, len(got))
	}
}

// TestSpillCapCancelsChunk: a chunk handed out, whose file the cap then
// removes, must not be written (its rows are counted as dropped).
func TestSpillCapCancelsChunk(t *testing.T) {
	t.Parallel()
	s := openTestSpill(t, t.TempDir(), 100, 2)
	if err := s.append(rowsFrom(0, 3)); err != nil {
		t.Fatal(err)
	}
	ch := s.next(2)
	if ch == nil || len(ch.rows) != 2 {
		t.Fatalf("chunk %+v", ch)
	}
	for i := range 3 { // new files push the first out
		if err := s.append(rowsFrom(10+i*5, 5)); err != nil {
			t.Fatal(err)
		}
	}
	if !ch.cancelled {
		t.Fatal("chunk of a removed file not cancelled")
	}
	if err := s.commit(ch); err != nil {
		t.Fatal(err)
	}
	if st := s.stats(); st.dropped < 3 {
		t.Fatalf("dropped %d, want the first file's 3 rows at least", st.dropped)
	}
}

// TestSpillRestart: a new process resumes after the checkpoint, ignores a
// torn last line, and never appends to an old file.
func TestSpillRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := openSpill(dir, spillTable(), 1<<20, 4, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	want := rowsFrom(0, 10)
	if err := s.append(want); err != nil {
		t.Fatal(err)
	}
	ch := s.next(4)
	if err := s.commit(ch); err != nil {
		t.Fatal(err)
	}
	ch = s.next(3) // read, never committed: replayed again after the restart
	if ch == nil {
		t.Fatal("no second chunk")
	}
	s.close()
	// A crash in the middle of an append leaves a torn line.
	f, err := os.OpenFile(csvFiles(t, dir)[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("10,\"s-")
	f.Close()

	s2 := openTestSpill(t, dir, 1<<20, 4)
	if st := s2.stats(); st.pending != 6 || st.files != 1 {
		t.Fatalf("after restart: %+v, want 6 rows pending in 1 file", st)
	}
	if err := s2.append(rowsFrom(50, 2)); err != nil {
		t.Fatal(err)
	}
	if n := len(csvFiles(t, dir)); n != 2 {
		t.Fatalf("%d files: the new process appended to an old file", n)
	}
	got := drain(t, s2, 4)
	if wantRest := append(slices.Clone(want[4:]), rowsFrom(50, 2)...); !reflect.DeepEqual(got, wantRest) {
		t.Fatalf("replayed %v\nwant %v", got, wantRest)
	}
}

// TestSpillShapes: a chunk never mixes rows that omit different columns.
func TestSpillShapes(t *testing.T) {
	t.Parallel()
	s := openTestSpill(t, t.TempDir(), 1<<20, 4)
	o := omitted{}
	in := []sample{{int64(1), "a", 1.0}, {int64(2), "b", 2.0}, {int64(3), o, nil}, {int64(4), o, 4.0}, {int64(5), "e", o}}
	if err := s.append(in); err != nil {
		t.Fatal(err)
	}
	var shapes [][]sample
	for {
		ch := s.next(10)
		if ch == nil {
			break
		}
		shapes = append(shapes, ch.rows)
		if err := s.commit(ch); err != nil {
			t.Fatal(err)
		}
	}
	if len(shapes) != 3 || len(shapes[0]) != 2 || len(shapes[1]) != 2 || len(shapes[2]) != 1 {
		t.Fatalf("chunks %v", shapes)
	}
	if !reflect.DeepEqual(slices.Concat(shapes...), in) {
		t.Fatalf("rows %v", shapes)
	}
}

// TestSpillSchemaChange: rows spilled under an older table are mapped by
// the header; a value for a column that is gone is rejected.
func TestSpillSchemaChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTestSpill(t, dir, 1<<20, 4)
	if err := s.append([]sample{{int64(1), omitted{}, 1.5}, {int64(2), "b", omitted{}}}); err != nil {
		t.Fatal(err)
	}
	s.close()
	newer := schema.NewTable("readings", []*schema.Column{
		{Name: "value", Type: "real", Kind: schema.Real},
		{Name: "id", Type: "integer", Kind: schema.Integer, NotNull: true},
		{Name: "extra", Type: "text", Kind: schema.Text},
	}, []string{"id"})
	s2, err := openSpill(dir, newer, 1<<20, 4, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.close()
	ch := s2.next(10)
	if ch == nil || len(ch.rows) != 1 || len(ch.rejected) != 1 {
		t.Fatalf("chunk %+v", ch)
	}
	if want := (sample{1.5, int64(1), omitted{}}); !reflect.DeepEqual(ch.rows[0], want) {
		t.Fatalf("row %v, want %v", ch.rows[0], want)
	}
	if !strings.Contains(ch.rejected[0].Error(), `"sensor"`) {
		t.Fatalf("rejection %v", ch.rejected[0])
	}
}

func TestSpillDir(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{"readings": "readings", "a/b": "a%2Fb", "..": "%2E%2E", "Ü": "%C3%9C"} {
		if got := filepath.Base(spillDir("/x", name)); got != want {
			t.Errorf("spillDir(%q) = %q, want %q", name, got, want)
		}
	}
}
