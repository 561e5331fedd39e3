package filelog

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestTornTail(t *testing.T) {
	t.Parallel()
	const n = 10
	tests := []struct {
		name string
		// tear damages the last segment, given the offset of its last
		// record; kept is how many records survive.
		tear func(b []byte, lastOff int) []byte
		kept int
	}{
		{"cut in the payload", func(b []byte, lastOff int) []byte { return b[:lastOff+headerSize+5] }, n - 1},
		{"cut in the header", func(b []byte, lastOff int) []byte { return b[:lastOff+7] }, n - 1},
		{"payload bytes rotted at the end", func(b []byte, lastOff int) []byte {
			b[len(b)-1] ^= 0xff
			return b
		}, n - 1},
		{"zeroes appended", func(b []byte, _ int) []byte { return append(b, make([]byte, 4096)...) }, n},
		{"garbage appended", func(b []byte, _ int) []byte {
			return append(b, []byte(strings.Repeat("not a record \x00\x01\xfe", 50))...)
		}, n},
		{"a lone byte appended", func(b []byte, _ int) []byte { return append(b, 7) }, n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := openLog(t, dir, Config{}, nil)
			es := appendN(t, l, n)
			closeLog(t, l)

			path := lastSegment(t, dir)
			offs := recordOffsets(t, path)
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			goodEnd := info.Size()
			if tt.kept < n {
				goodEnd = offs[tt.kept]
			}
			mutate(t, path, func(b []byte) []byte { return tt.tear(b, int(offs[len(offs)-1])) })

			rep, err := Check(dir)
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			if rep.TornTail == nil || rep.TornTail.Offset != goodEnd || rep.Records != int64(tt.kept) {
				t.Fatalf("check: torn tail %v, %d records; want a torn tail at %d, %d records", rep.TornTail, rep.Records, goodEnd, tt.kept)
			}

			logger, logs := testLogger()
			l = openLog(t, dir, Config{}, logger)
			if !strings.Contains(logs.String(), `"level":"WARN","msg":"filelog: cut off torn tail"`) ||
				!strings.Contains(logs.String(), `"offset":`+strconv.FormatInt(goodEnd, 10)) {
				t.Fatalf("no warning about the torn tail at %d in the log:\n%s", goodEnd, logs)
			}
			if info, err := os.Stat(path); err != nil || info.Size() != goodEnd {
				t.Fatalf("segment not cut to %d: %v %v", goodEnd, info.Size(), err)
			}
			if got, want := pendingPositions(t, l), positions(es[:tt.kept]); !slices.Equal(got, want) {
				t.Fatalf("pending after repair %v, want %v", got, want)
			}
			more := appendN(t, l, 2)
			if want := []string{strconv.Itoa(tt.kept + 1), strconv.Itoa(tt.kept + 2)}; !slices.Equal(positions(more), want) {
				t.Fatalf("appends after repair at %v, want %v", positions(more), want)
			}
			closeLog(t, l)
			// The repaired log opens clean, with every record.
			if rep, err := Check(dir); err != nil || rep.TornTail != nil || rep.Records != int64(tt.kept+2) {
				t.Fatalf("check after repair: %+v, %v", rep, err)
			}
		})
	}
}

func TestCorruptionInTheMiddle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		record int // which record of the segment to damage
		damage func(b []byte, off int)
	}{
		{"payload byte flipped", 2, func(b []byte, off int) { b[off+headerSize+10] ^= 0x01 }},
		{"checksum byte flipped", 0, func(b []byte, off int) { b[off+5] ^= 0x80 }},
		{"sequence number changed", 3, func(b []byte, off int) { b[off+8]++ }},
		{"length made huge", 4, func(b []byte, off int) { b[off+3] = 0x7f }},
		{"length made short", 5, func(b []byte, off int) { b[off]-- }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := openLog(t, dir, Config{}, nil)
			appendN(t, l, 10)
			closeLog(t, l)
			path := lastSegment(t, dir)
			off := recordOffsets(t, path)[tt.record]
			mutate(t, path, func(b []byte) []byte {
				tt.damage(b, int(off))
				return b
			})
			wantCorruption(t, dir, filepath.Base(path), off)
		})
	}
}

// wantCorruption checks that Open refuses the log with a *CorruptionError
// at segment and off, and that Check reports the same.
func wantCorruption(t *testing.T, dir, segment string, off int64) {
	t.Helper()
	_, err := Open(dir, Config{}, nil)
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.Segment != segment || ce.Offset != off {
		t.Fatalf("open: %v; want a *CorruptionError in %s at %d", err, segment, off)
	}
	if !strings.Contains(err.Error(), segment) {
		t.Fatalf("error %q does not name the segment", err)
	}
	rep, err := Check(dir)
	if !errors.As(err, &ce) || ce.Segment != segment || ce.Offset != off || rep.Corruption == nil || *rep.Corruption != *ce {
		t.Fatalf("check: %v, report %+v; want the same corruption", err, rep.Corruption)
	}
}

func TestCorruptionInAnEarlierSegment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{SegmentSize: 1000}, nil)
	appendN(t, l, 20)
	closeLog(t, l)
	names := segmentFiles(t, dir)
	if len(names) < 3 {
		t.Fatalf("%d segments, want several", len(names))
	}
	// The last record of the first segment, a tail only in appearance: a
	// segment that was followed by another was complete.
	path := filepath.Join(dir, names[0])
	offs := recordOffsets(t, path)
	last := offs[len(offs)-1]
	mutate(t, path, func(b []byte) []byte { return b[:len(b)-3] })
	wantCorruption(t, dir, names[0], last)
}

func TestCorruptionGarbageAfterGoodRecordInLastSegment(t *testing.T) {
	t.Parallel()
	// A torn record followed by a valid one is not a torn tail.
	dir := t.TempDir()
	l := openLog(t, dir, Config{}, nil)
	appendN(t, l, 5)
	closeLog(t, l)
	path := lastSegment(t, dir)
	offs := recordOffsets(t, path)
	mutate(t, path, func(b []byte) []byte {
		// Zero the 4th record; the 5th stays valid after it.
		clear(b[offs[3]:offs[4]])
		return b
	})
	wantCorruption(t, dir, filepath.Base(path), offs[3])
}

func TestMissingSegment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{SegmentSize: 1000}, nil)
	appendN(t, l, 20)
	closeLog(t, l)
	names := segmentFiles(t, dir)
	if err := os.Remove(filepath.Join(dir, names[1])); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Config{}, nil)
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.Segment != names[0] || !errors.Is(err, errMissing) {
		t.Fatalf("open with a segment missing: %v; want records missing after %s", err, names[0])
	}
}

func TestCorruptCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{}, nil)
	if err := l.Ack(t.Context(), claimN(t, l, len(appendN(t, l, 3)))); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	mutate(t, filepath.Join(dir, checkpointName), func(b []byte) []byte {
		b[len(checkpointMagic)] ^= 1
		return b
	})
	_, err := Open(dir, Config{}, nil)
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.Segment != checkpointName {
		t.Fatalf("open with a damaged checkpoint: %v; want a *CorruptionError naming %s", err, checkpointName)
	}
}

func TestCheckReport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{SegmentSize: 1000}, nil)
	appendN(t, l, 20)
	if err := l.Ack(t.Context(), claimN(t, l, 4)); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	rep, err := Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Acked != 4 || rep.LastSeq != 20 || rep.TornTail != nil || rep.Corruption != nil {
		t.Fatalf("report %+v", rep)
	}
	var records int64
	for _, s := range rep.Segments {
		records += s.Records
		if s.Reclaimable || s.Records == 0 || s.LastSeq-s.FirstSeq+1 != uint64(s.Records) {
			t.Fatalf("segment %+v", s)
		}
	}
	if records != rep.Records || rep.FirstSeq != rep.Segments[0].FirstSeq || rep.LastSeq-rep.FirstSeq+1 != uint64(rep.Records) {
		t.Fatalf("report %+v does not add up", rep)
	}
	if rep.FirstSeq > 5 {
		t.Fatalf("first seq %d: unacknowledged records gone", rep.FirstSeq)
	}
}

func TestCheckEmpty(t *testing.T) {
	t.Parallel()
	rep, err := Check(t.TempDir())
	if err != nil || rep.Records != 0 || len(rep.Segments) != 0 {
		t.Fatalf("check of an empty directory: %+v, %v", rep, err)
	}
	if _, err := Check(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Fatal("check of a missing directory succeeded")
	}
}
