package history

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// fakeSpool applies each request at once and atomically, and keeps what
// the audit trigger, the table and spool_applied would hold. Its reads see
// every write applied before them, so a history recorded against it has no
// anomaly.
type fakeSpool struct {
	mu      sync.Mutex
	applied map[string][]Applied
	rows    map[string]int64
	txns    map[string]bool
	next    int
}

func newFakeSpool() *fakeSpool {
	return &fakeSpool{applied: make(map[string][]Applied), rows: make(map[string]int64), txns: make(map[string]bool)}
}

// apply applies ws and returns the transaction's id.
func (s *fakeSpool) apply(ws []Write) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		switch w.Op {
		case Insert, Update:
			s.rows[w.Row] = w.Counter
			s.applied[w.Row] = append(s.applied[w.Row], Applied{w.Op, w.Counter})
		case Delete:
			s.applied[w.Row] = append(s.applied[w.Row], Applied{Delete, s.rows[w.Row]})
			delete(s.rows, w.Row)
		}
	}
	s.next++
	id := fmt.Sprintf("t%d", s.next)
	s.txns[id] = true
	return id
}

func (s *fakeSpool) read(row string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.rows[row]
	return v, ok
}

func (s *fakeSpool) final() Final {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Final{Applied: s.applied, Rows: s.rows, AppliedTxns: s.txns}
}

// runWriter drives one client: pairs of rows written together, each pair
// inserted, updated and perhaps deleted, with requests acknowledged,
// refused or of unknown outcome (applied or not), and reads and status
// reads between them.
func runWriter(c *Client, s *fakeSpool, rng *rand.Rand, pairs int) {
	for p := range pairs {
		a, b := fmt.Sprintf("%s-%d-a", c.Name(), p), fmt.Sprintf("%s-%d-b", c.Name(), p)
		inserted := false
		for counter := int64(1); counter <= 6; counter++ {
			op := Update
			switch {
			case !inserted:
				op = Insert
			case counter == 6 && rng.IntN(2) == 0:
				op = Delete
			}
			ws := []Write{{a, op, counter}, {b, op, counter}}
			q := c.Invoke(ws...)
			fate := rng.IntN(10)
			if fate == 0 {
				q.Failed(errRefused)
				continue
			}
			if fate == 1 {
				if rng.IntN(2) == 0 {
					s.apply(ws)
				}
				q.Unknown(errTimeout)
				break // the pair is never written again
			}
			id := s.apply(ws)
			q.OK(id)
			inserted = true
			for _, st := range []State{StateQueued, StateApplied, StateReplicated} {
				c.Status(id, st)
			}
			r := c.InvokeRead(a, fmt.Sprintf("api-%d", rng.IntN(3)))
			r.Observed(s.read(a))
		}
	}
}

// runReader reads a client's rows from a goroutine of its own, as a
// harness reading through several api processes at once would.
func runReader(c *Client, s *fakeSpool, rng *rand.Rand, pairs int, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		row := fmt.Sprintf("%s-%d-b", c.Name(), rng.IntN(pairs))
		r := c.InvokeRead(row, fmt.Sprintf("api-%d", rng.IntN(3)))
		if rng.IntN(20) == 0 {
			r.Unknown(errTimeout)
			continue
		}
		r.Observed(s.read(row))
	}
}

func TestCleanConcurrentHistory(t *testing.T) {
	t.Parallel()
	const clients, pairs = 8, 20
	h := New()
	s := newFakeSpool()
	stop := make(chan struct{})
	var writers, readers sync.WaitGroup
	for i := range clients {
		c := h.Client(fmt.Sprintf("w%d", i))
		writers.Go(func() { runWriter(c, s, rand.New(rand.NewPCG(uint64(i), 1)), pairs) })
		readers.Go(func() { runReader(c, s, rand.New(rand.NewPCG(uint64(i), 2)), pairs, stop) })
	}
	writers.Wait()
	close(stop)
	readers.Wait()

	report := h.Check(s.final())
	t.Log(report.Summary)
	if len(report.Anomalies) > 0 {
		t.Fatalf("a clean history has anomalies:\n%s", report)
	}
	sum := report.Summary
	if sum.Clients != clients || sum.Txns.OK == 0 || sum.Txns.Failed == 0 || sum.Txns.Unknown == 0 || sum.Reads.OK == 0 || sum.StatusReads == 0 {
		t.Fatalf("the workload did not exercise every outcome: %s", sum)
	}
}

func TestClientSameName(t *testing.T) {
	t.Parallel()
	h := New()
	a, b := h.Client("w1"), h.Client("w1")
	if a != b {
		t.Fatal("Client returned two recorders for one name")
	}
}

func TestCompleteTwicePanics(t *testing.T) {
	t.Parallel()
	h := New()
	c := h.Client("w1")
	cases := map[string]func(){
		"request": func() {
			q := c.Invoke(Write{"a", Insert, 1})
			q.OK("t1")
			q.Unknown(errTimeout)
		},
		"read": func() {
			r := c.InvokeRead("a", "api-1")
			r.Observed(1, true)
			r.Observed(1, true)
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Error("completing twice did not panic")
				}
			}()
			f()
		})
	}
}
