package events

import (
	"fmt"
	"slices"
	"testing"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/txn"
)

// TestHoldQueue: a local log's changes come out in the order they came,
// each queued transaction once its append succeeded (or a later state of
// it came), a refused one never, and nothing behind a transaction still
// waiting for its append; over many rounds the queue reuses its space.
func TestHoldQueue(t *testing.T) {
	var q holdQueue
	ids := func(es []entryChanges) []string {
		var out []string
		for _, e := range es {
			for _, c := range e.cs {
				out = append(out, fmt.Sprintf("%s:%s", c.ID, c.State))
			}
		}
		return out
	}
	queued := func(id string) changes.Change { return changes.Change{ID: id, State: txn.Queued} }
	logged := func(id string) changes.Change { return changes.Change{ID: id, State: txn.Queued, Logged: true} }
	refused := func(id string) changes.Change { return changes.Change{ID: id, State: txn.Queued, Refused: true} }

	for _, c := range []changes.Change{queued("a"), queued("b"), queued("c"), logged("b")} {
		q.add(c)
	}
	if got := ids(q.ready()); len(got) != 0 {
		t.Fatalf("a waits, so nothing goes: %v", got)
	}
	q.add(changes.Change{ID: "a", State: txn.Applied}) // applied before its append returned
	q.add(refused("c"))
	want := []string{"a:queued", "b:queued", "a:applied"}
	if got := ids(q.ready()); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	q.add(logged("a")) // late: a already went
	if got := ids(q.ready()); len(got) != 0 || len(q.waiting) != 0 {
		t.Fatalf("nothing is left, got %v (waiting %v)", got, q.waiting)
	}

	// Many rounds, one transaction always waiting at the front for a while.
	held := ""
	for i := range 5000 {
		id := fmt.Sprint(i)
		q.add(queued(id))
		if i%100 == 0 {
			if held != "" {
				q.add(logged(held))
			}
			held = id
		} else {
			q.add(logged(id))
		}
		for _, e := range q.ready() {
			if e.cs[0].ID == held {
				t.Fatalf("round %d: %s went before its append", i, held)
			}
		}
	}
	q.add(logged(held))
	q.ready()
	if q.head != 0 || len(q.fifo) != 0 || len(q.waiting) != 0 || cap(q.fifo) > 4096 { // bounded: compacted once 1,024 went
		t.Fatalf("left head %d, %d held (capacity %d), %d waiting", q.head, len(q.fifo), cap(q.fifo), len(q.waiting))
	}
}
