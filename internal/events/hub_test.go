package events_test

import (
	"context"
	"errors"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/events"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// unreadable knows one table and can read none of its rows.
type unreadable struct {
	t     *schema.Table
	reads atomic.Int64
}

func (u *unreadable) Table(name string) (*schema.Table, error) {
	if name != u.t.Name {
		return nil, errors.New("no such table")
	}
	return u.t, nil
}

func (u *unreadable) GetMany(context.Context, *schema.Table, []string, gateway.Consistency) ([]schema.Row, error) {
	u.reads.Add(1)
	return nil, errors.New("the database is away")
}

// TestQueuedRowsDecidedWithoutRead: a queued insert's message carries the
// row as the insert leaves it (its values, the table's other columns
// null) and a delete's no row, without a read of rows; an update's row is
// read (here the read fails, and its message says so).
func TestQueuedRowsDecidedWithoutRead(t *testing.T) {
	ctx := t.Context()
	obs := schema.NewTable("obs", []*schema.Column{
		{Name: "id", Kind: schema.Text}, {Name: "target", Kind: schema.Text}, {Name: "note", Kind: schema.Text},
	}, []string{"id"})
	r := &unreadable{t: obs}
	in := events.NewIntake(0)
	h, err := events.New(events.Config{Reader: r, Intake: in})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	sub, err := h.Subscribe(ctx, events.Filter{Query: &query.Query{Table: obs}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	values := map[string]any{"id": "a", "target": "M31"}
	for _, op := range []txn.Operation{
		{Op: txn.Insert, Table: "obs", ID: "a", Values: values},
		{Op: txn.Update, Table: "obs", ID: "a", Values: map[string]any{"note": "seen"}},
		{Op: txn.Delete, Table: "obs", ID: "a"},
	} {
		tx := &txn.Transaction{ID: txn.NewID(), Operations: []txn.Operation{op}}
		in.Changed([]changes.Change{{ID: tx.ID, State: txn.Queued, Tx: tx}, {ID: tx.ID, State: txn.Queued, Logged: true}})
	}
	var got []*events.Message
	deadline := time.After(5 * time.Second)
	for len(got) < 3 {
		select {
		case m := <-sub.C():
			got = append(got, m)
		case <-deadline:
			t.Fatalf("got %d of 3 row messages", len(got))
		}
	}
	want := map[string]any{"id": "a", "target": "M31", "note": nil}
	if m := got[0]; m.Op != txn.Insert || m.ReadErr != "" || !maps.Equal(m.Row, want) {
		t.Errorf("insert: row %v (read error %q), want %v", m.Row, m.ReadErr, want)
	}
	if len(values) != 2 {
		t.Errorf("the transaction's values were changed: %v", values)
	}
	if m := got[1]; m.Op != txn.Update || m.ReadErr == "" {
		t.Errorf("update: want the read's error, got row %v", m.Row)
	}
	if m := got[2]; m.Op != txn.Delete || m.ReadErr != "" || m.Row != nil {
		t.Errorf("delete: row %v (read error %q), want none", m.Row, m.ReadErr)
	}
	if n := r.reads.Load(); n == 0 {
		t.Error("the update's row was never read")
	}
}
