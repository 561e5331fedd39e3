package filelog

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// openLog opens the log in dir and closes it when the test ends.
func openLog(t *testing.T, dir string, cfg Config, logger *slog.Logger) *Log {
	t.Helper()
	l, err := Open(dir, cfg, logger)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func closeLog(t *testing.T, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func testTx(i int) *txn.Transaction {
	return &txn.Transaction{
		ID: txn.NewID(),
		Operations: []txn.Operation{{
			Op: txn.Insert, Table: "samples", ID: txn.NewID(),
			Values: map[string]any{"n": i, "label": fmt.Sprintf("sample %d", i)},
		}},
		CreatedAt: time.Now().UTC(),
	}
}

// appendN appends n transactions and returns their entries.
func appendN(t *testing.T, l *Log, n int) []txlog.Entry {
	t.Helper()
	es := make([]txlog.Entry, n)
	for i := range es {
		e, err := l.Append(t.Context(), testTx(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		es[i] = e
	}
	return es
}

func claimN(t *testing.T, l *Log, n int) []txlog.Entry {
	t.Helper()
	var got []txlog.Entry
	for len(got) < n {
		es, err := l.Claim(t.Context(), n-len(got))
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		got = append(got, es...)
	}
	return got
}

func pendingPositions(t *testing.T, l *Log) []string {
	t.Helper()
	var ps []string
	if err := l.Pending(t.Context(), func(e txlog.Entry) error {
		ps = append(ps, e.Pos)
		return nil
	}); err != nil {
		t.Fatalf("pending: %v", err)
	}
	return ps
}

func positions(es []txlog.Entry) []string {
	ps := make([]string, len(es))
	for i, e := range es {
		ps[i] = e.Pos
	}
	return ps
}

// segmentFiles lists the segment file names in dir.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(segs))
	for i, s := range segs {
		names[i] = s.name
	}
	return names
}

// recordOffsets returns the offset of every record in a segment file,
// walking the length fields.
func recordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := 0; off+headerSize <= len(b); {
		offs = append(offs, int64(off))
		off += headerSize + int(binary.LittleEndian.Uint32(b[off:]))
	}
	return offs
}

// lastSegment returns the path of the last segment file in dir.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	names := segmentFiles(t, dir)
	if len(names) == 0 {
		t.Fatal("no segment")
	}
	return filepath.Join(dir, names[len(names)-1])
}

// mutate rewrites a file through fn.
func mutate(t *testing.T, path string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o644); err != nil {
		t.Fatal(err)
	}
}
