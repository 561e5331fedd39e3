package redislog

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/txn"
)

// TestEvents: an append puts its transaction, queued, on the events stream
// in the same step; settled states follow as PublishEvents writes them,
// a run of one state as one entry; positions order them. A queued insert
// carries its values, normalised as the overlay's are.
func TestEvents(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{Normalize: func(table string, values map[string]any) {
		if n, ok := values["v"].(json.Number); ok && table == "t" {
			values["v"], _ = n.Int64()
		}
	}})
	ctx := testCtx(t)
	_, last, err := l.EventBounds(ctx)
	if err != nil || last != "0-0" {
		t.Fatalf("bounds of an empty stream: %s, %v", last, err)
	}
	a := newTxn(txn.Operation{Op: txn.Insert, Table: "t", ID: "k:1", Values: map[string]any{"v": 1}}, txn.Operation{Op: txn.Update, Table: "u", ID: "2"})
	b := newTxn(txn.Operation{Op: txn.Delete, Table: "t", ID: "k:1"})
	for _, tx := range []*txn.Transaction{a, b} {
		if _, err := l.Append(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.PublishEvents(ctx, []changes.Change{
		{ID: a.ID, State: txn.Queued}, // skipped: the script wrote it
		{ID: a.ID, State: txn.Applied, LSN: 7}, {ID: b.ID, State: txn.Applied, LSN: 7},
		{ID: b.ID, State: txn.Failed, Err: errors.New("boom"), Code: "23503", Tx: b},
	}); err != nil {
		t.Fatal(err)
	}
	recs, err := l.ReadEvents(ctx, "0-0", 10, time.Millisecond, func(table string) bool { return table == "t" })
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4: %+v", len(recs), recs)
	}
	q := recs[0].Changes[0]
	if q.ID != a.ID || q.State != txn.Queued || !q.Logged || len(q.Tx.Operations) != 2 || q.Tx.Operations[0].ID != "k:1" || q.Tx.Operations[1].Op != txn.Update {
		t.Fatalf("queued: %+v %+v", q, q.Tx)
	}
	if v := q.Tx.Operations[0].Values; len(v) != 1 || v["v"] != int64(1) || q.Tx.Operations[1].Values != nil {
		t.Fatalf("queued: values %#v and %#v, want the insert's (normalised) alone", v, q.Tx.Operations[1].Values)
	}
	if cs := recs[2].Changes; len(cs) != 2 || cs[0].State != txn.Applied || cs[1].ID != b.ID || cs[1].LSN != 7 {
		t.Fatalf("applied: %+v", cs)
	}
	if f := recs[3].Changes[0]; f.State != txn.Failed || f.Err.Error() != "boom" || f.Code != "23503" || f.Tx.Operations[0].Op != txn.Delete || f.Tx.Operations[0].Values != nil {
		t.Fatalf("failed: %+v", f)
	}
	for i := 1; i < len(recs); i++ {
		if ComparePos(recs[i-1].Pos, recs[i].Pos) >= 0 {
			t.Fatalf("positions out of order: %s, %s", recs[i-1].Pos, recs[i].Pos)
		}
	}
	first, last, err := l.EventBounds(ctx)
	if err != nil || first != recs[0].Pos || last != recs[3].Pos {
		t.Fatalf("bounds %s..%s, %v", first, last, err)
	}
	again, err := l.RangeEvents(ctx, recs[1].Pos, 2)
	if err != nil || len(again) != 2 || again[0].Pos != recs[1].Pos {
		t.Fatalf("range: %+v, %v", again, err)
	}
	// A reader that wants no table's values gets none decoded.
	bare, err := l.ReadEvents(ctx, "0-0", 1, time.Millisecond, func(string) bool { return false })
	if err != nil || len(bare) != 1 || bare[0].Changes[0].Tx.Operations[0].Values != nil || bare[0].Changes[0].Tx.Operations[0].ID != "k:1" {
		t.Fatalf("without values: %+v, %v", bare, err)
	}
	// A retried append of a pending transaction adds no second event.
	if _, err := l.Append(ctx, a); err != nil {
		t.Fatal(err)
	}
	if more, _ := l.ReadEvents(ctx, recs[3].Pos, 10, time.Millisecond, nil); len(more) != 0 {
		t.Fatalf("a repeated append added %+v", more)
	}
}
