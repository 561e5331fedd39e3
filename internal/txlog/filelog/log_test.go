package filelog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

func TestRotationAndReclaim(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{SegmentSize: 400} // about one record per segment
	l := openLog(t, dir, cfg, nil)
	es := appendN(t, l, 12)
	if n := len(segmentFiles(t, dir)); n < 6 {
		t.Fatalf("%d segments after 12 appends into 400-byte segments, want at least 6", n)
	}
	before, err := l.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	claimed := claimN(t, l, 12)
	if err := l.Ack(t.Context(), claimed[:7]); err != nil {
		t.Fatal(err)
	}
	// Every segment left holds an unacknowledged record, or is the last.
	names := segmentFiles(t, dir)
	for i, name := range names[:len(names)-1] {
		if next, _ := parseSegmentName(names[i+1]); next-1 <= 7 {
			t.Fatalf("segment %s, all acknowledged, was not deleted (segments %v)", name, names)
		}
	}
	after, err := l.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after.Depth != 5 || after.Bytes >= before.Bytes {
		t.Fatalf("stats after acking 7 of 12: %+v (before %+v)", after, before)
	}
	if got := pendingPositions(t, l); !slices.Equal(got, positions(es[7:])) {
		t.Fatalf("pending %v, want %v", got, positions(es[7:]))
	}
	if err := l.Ack(t.Context(), claimed[7:]); err != nil {
		t.Fatal(err)
	}
	if names := segmentFiles(t, dir); len(names) != 1 {
		t.Fatalf("segments %v after acking everything, want only the last", names)
	}
	closeLog(t, l)

	// Sequence numbers go on after a restart with everything acknowledged.
	l = openLog(t, dir, cfg, nil)
	if e := appendN(t, l, 1); e[0].Pos != "13" {
		t.Fatalf("first append after restart at %s, want 13", e[0].Pos)
	}
	if err := l.Ack(t.Context(), claimN(t, l, 1)); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)

	// Even with every segment file gone, the checkpoint keeps the count.
	for _, name := range segmentFiles(t, dir) {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	l = openLog(t, dir, cfg, nil)
	if e := appendN(t, l, 1); e[0].Pos != "14" {
		t.Fatalf("first append with no segment left at %s, want 14", e[0].Pos)
	}
}

// TestReclaimWhileClaimReaderOpen acknowledges a segment that Claim's
// reader still has open at its end, then claims from the next one.
func TestReclaimWhileClaimReaderOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{SegmentSize: 400, ClaimCache: -1}, nil) // claims read the files
	for i := range 6 {
		es := appendN(t, l, 1)
		got := claimN(t, l, 1)
		if got[0].Pos != es[0].Pos {
			t.Fatalf("round %d: claimed %s, want %s", i, got[0].Pos, es[0].Pos)
		}
		if err := l.Ack(t.Context(), got); err != nil {
			t.Fatal(err)
		}
	}
	if names := segmentFiles(t, dir); len(names) != 1 {
		t.Fatalf("segments %v, want one", names)
	}
}

func TestAckErrors(t *testing.T) {
	t.Parallel()
	l := openLog(t, t.TempDir(), Config{}, nil)
	es := appendN(t, l, 4)
	claimN(t, l, 3)
	for _, tt := range []struct {
		name    string
		entries []txlog.Entry
	}{
		{"not claimed", []txlog.Entry{es[0], es[1], es[2], es[3]}},
		{"out of order", []txlog.Entry{es[1], es[0]}},
		{"skipping one", []txlog.Entry{es[0], es[2]}},
		{"not a position", []txlog.Entry{{Pos: "1-0"}}},
	} {
		if err := l.Ack(t.Context(), tt.entries); !errors.Is(err, ErrAckOrder) {
			t.Errorf("ack %s: %v, want ErrAckOrder", tt.name, err)
		}
	}
	if d := depth(t, l); d != 4 {
		t.Fatalf("depth %d after refused acks, want 4", d)
	}
	if err := l.Ack(t.Context(), es[:2]); err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(t.Context(), es[1:3]); !errors.Is(err, ErrAckOrder) {
		t.Fatalf("ack of an acknowledged entry: %v, want ErrAckOrder", err)
	}
	if err := l.Ack(t.Context(), es[2:3]); err != nil {
		t.Fatal(err)
	}
}

func depth(t *testing.T, l *Log) int64 {
	t.Helper()
	st, err := l.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st.Depth
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg   Config
		field string
	}{
		{Config{SegmentSize: -1}, "SegmentSize"},
		{Config{MaxRecordSize: -1}, "MaxRecordSize"},
		{Config{MaxRecordSize: 1 << 33}, "MaxRecordSize"},
		{Config{QueueLength: -5}, "QueueLength"},
		{Config{MaxBatchBytes: -5}, "MaxBatchBytes"},
	} {
		err := tt.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tt.cfg, err, tt.field)
		}
		if _, err := Open(t.TempDir(), tt.cfg, nil); err == nil {
			t.Errorf("Open with %+v succeeded", tt.cfg)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	d := Config{}.withDefaults()
	if d.SegmentSize != DefaultSegmentSize || d.MaxRecordSize != DefaultMaxRecordSize ||
		d.QueueLength != DefaultQueueLength || d.MaxBatchBytes != DefaultMaxBatchBytes {
		t.Fatalf("defaults %+v", d)
	}
}

func TestDirectoryLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{}, nil)
	if l2, err := Open(dir, Config{}, nil); err == nil {
		_ = l2.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
	closeLog(t, l)
	openLog(t, dir, Config{}, nil) // free again
}

func TestOpenCreatesDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "spool-data", "log")
	l := openLog(t, dir, Config{}, nil)
	appendN(t, l, 1)
	closeLog(t, l)
	if names := segmentFiles(t, dir); len(names) != 1 || names[0] != segmentName(1) {
		t.Fatalf("segments %v, want %s", names, segmentName(1))
	}
}

// TestReadAcrossBuffers claims and lists enough records that they cross the
// read buffer's boundaries, one of them larger than the buffer itself.
func TestReadAcrossBuffers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{ClaimCache: -1}, nil) // claims read the files
	const writers, each = 8, 125
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				tx := testTx(w*each + i)
				if w == 3 && i == 60 {
					tx.Operations[0].Values["blob"] = strings.Repeat("large ", 20000) // 120 KB
				}
				if _, err := l.Append(t.Context(), tx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	check := func(what string, es []txlog.Entry) {
		t.Helper()
		if len(es) != writers*each {
			t.Fatalf("%s: %d entries, want %d", what, len(es), writers*each)
		}
		large := 0
		for i, e := range es {
			if e.Pos != strconv.Itoa(i+1) {
				t.Fatalf("%s: entry %d at %s", what, i, e.Pos)
			}
			if _, ok := e.Tx.Operations[0].Values["blob"]; ok {
				large++
			}
		}
		if large != 1 {
			t.Fatalf("%s: %d large transactions, want 1", what, large)
		}
	}
	var claimed []txlog.Entry
	for len(claimed) < writers*each {
		es, err := l.Claim(t.Context(), 37)
		if err != nil {
			t.Fatal(err)
		}
		claimed = append(claimed, es...)
	}
	check("claimed", claimed)
	closeLog(t, l)
	l = openLog(t, dir, Config{}, nil)
	var pending []txlog.Entry
	if err := l.Pending(t.Context(), func(e txlog.Entry) error {
		pending = append(pending, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("pending after reopen", pending)
}

func TestSyncsCountsEveryGroup(t *testing.T) {
	l := openLog(t, t.TempDir(), Config{}, nil)
	before := l.Syncs()
	appendN(t, l, 5) // one after the other: a group each
	h := l.Syncs()
	if got := h.Count - before.Count; got != 5 || uint64(l.syncs.Load()) != h.Count {
		t.Fatalf("Syncs counted %d syncs for 5 lone appends (%d in all, the writer synced %d times)", got, h.Count, l.syncs.Load())
	}
	if h.Sum <= 0 || h.Cumulative[len(h.Cumulative)-1] > h.Count {
		t.Fatalf("Syncs = %+v: no time summed, or a bucket counts more than all", h)
	}
	for i := 1; i < len(h.Cumulative); i++ {
		if h.Cumulative[i] < h.Cumulative[i-1] {
			t.Fatalf("Syncs = %+v: buckets not cumulative", h)
		}
	}
}

// TestClaimCache: Claim hands over the transactions Append was given,
// up to Config.ClaimCache of them; past it, and after a reopen, it reads
// them from the files, in the same order, with the same contents; a
// claim that mixes the two keeps the order.
func TestClaimCache(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{SegmentSize: 4096, ClaimCache: 5}
	l := openLog(t, dir, cfg, nil)
	var txs []*txn.Transaction
	add := func(n int) {
		for range n {
			tx := testTx(len(txs))
			if _, err := l.Append(t.Context(), tx); err != nil {
				t.Fatal(err)
			}
			txs = append(txs, tx)
		}
	}
	same := func(e txlog.Entry, want *txn.Transaction) bool {
		return e.Tx.ID == want.ID && len(e.Tx.Operations) == 1 && e.Tx.Operations[0].ID == want.Operations[0].ID &&
			fmt.Sprint(e.Tx.Operations[0].Values["label"]) == want.Operations[0].Values["label"]
	}
	add(8) // 5 kept, 3 only in the files
	got := claimN(t, l, 4)
	add(3) // room for 3 again: 9..11 kept
	got = append(got, claimN(t, l, 7)...)
	for i, e := range got {
		kept := i < 5 || i >= 8
		if e.Pos != fmt.Sprint(i+1) || !same(e, txs[i]) || (e.Tx == txs[i]) != kept {
			t.Fatalf("entry %d: %s %+v, want %s, handed over as appended: %v", i, e.Pos, e.Tx, txs[i].ID, kept)
		}
	}
	if len(l.recent) != 0 {
		t.Fatalf("%d transactions kept after every one was claimed", len(l.recent))
	}
	closeLog(t, l)

	// After a reopen, nothing was acknowledged: everything from the files.
	l = openLog(t, dir, cfg, nil)
	again := claimN(t, l, len(txs))
	for i, e := range again {
		if !same(e, txs[i]) || e.Tx == txs[i] {
			t.Fatalf("entry %d after reopen: %+v, want %s read from the files", i, e.Tx, txs[i].ID)
		}
	}
}
