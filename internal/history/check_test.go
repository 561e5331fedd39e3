package history

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var (
	errRefused = errors.New("400 Bad Request: counter must be an integer")
	errTimeout = errors.New("context deadline exceeded")
)

// ok records a request of c acknowledged as txID.
func ok(c *Client, txID string, ws ...Write) { c.Invoke(ws...).OK(txID) }

// observe records a read of row by c through api-1 that answered.
func observe(c *Client, row string, counter int64, present bool) {
	c.InvokeRead(row, "api-1").Observed(counter, present)
}

// recordBase records client w1's clean history: row a inserted and updated
// twice, rows b and c inserted by one transaction, b deleted, a read of a
// and the status reads of t1.
func recordBase(h *History) *Client {
	c := h.Client("w1")
	ok(c, "t1", Write{"a", Insert, 1})
	ok(c, "t2", Write{"a", Update, 2})
	ok(c, "t3", Write{"a", Update, 3})
	ok(c, "t4", Write{"b", Insert, 1}, Write{"c", Insert, 1})
	ok(c, "t5", Write{"b", Delete, 0})
	observe(c, "a", 3, true)
	observe(c, "b", 0, false)
	c.Status("t1", StateQueued)
	c.Status("t1", StateApplied)
	c.Status("t1", StateReplicated)
	return c
}

// baseFinal returns the final state of recordBase's history.
func baseFinal() Final {
	return Final{
		Applied: map[string][]Applied{
			"a": {{Insert, 1}, {Update, 2}, {Update, 3}},
			"b": {{Insert, 1}, {Delete, 1}},
			"c": {{Insert, 1}},
		},
		Rows:        map[string]int64{"a": 3, "c": 1},
		AppliedTxns: map[string]bool{"t1": true, "t2": true, "t3": true, "t4": true, "t5": true},
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		record func(c *Client) // after the base history
		final  func(f *Final)  // changes to the base final state
		want   []Kind          // in report order
		words  []string        // in the first anomaly's message
	}{
		{name: "clean"},
		{
			name:  "acknowledged write dropped",
			final: func(f *Final) { f.Applied["a"] = slices.Delete(f.Applied["a"], 1, 2) },
			want:  []Kind{KindLost},
			words: []string{"row a", "update a=2", "client w1", "txn t2", "never applied"},
		},
		{
			name:  "acknowledged transaction missing from spool_applied",
			final: func(f *Final) { delete(f.AppliedTxns, "t2") },
			want:  []Kind{KindLost},
			words: []string{"txn t2", "client w1", "spool_applied"},
		},
		{
			name: "acknowledged delete dropped",
			final: func(f *Final) {
				f.Applied["b"] = f.Applied["b"][:1]
				f.Rows["b"] = 1
			},
			want:  []Kind{KindLost},
			words: []string{"delete b", "txn t5"},
		},
		{
			name:  "write applied twice",
			final: func(f *Final) { f.Applied["a"] = slices.Insert(f.Applied["a"], 2, Applied{Update, 2}) },
			want:  []Kind{KindDuplicated},
			words: []string{"row a", "update a=2", "client w1", "2 times"},
		},
		{
			name: "write applied again after a newer one",
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Update, 2})
				f.Rows["a"] = 2
			},
			want: []Kind{KindDuplicated},
		},
		{
			name: "two writes of a row swapped",
			final: func(f *Final) {
				f.Applied["a"] = []Applied{{Insert, 1}, {Update, 3}, {Update, 2}}
				f.Rows["a"] = 2
			},
			want:  []Kind{KindReordered},
			words: []string{"row a", "client w1", "[insert a=1, update a=3, update a=2]", "[insert a=1, update a=2, update a=3]"},
		},
		{
			name: "change no client sent",
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Update, 99})
				f.Rows["a"] = 99
			},
			want:  []Kind{KindPhantom},
			words: []string{"row a", "update 99", "no client"},
		},
		{
			name: "row no client wrote",
			final: func(f *Final) {
				f.Applied["z"] = []Applied{{Insert, 5}}
				f.Rows["z"] = 5
			},
			want: []Kind{KindPhantom},
		},
		{
			name:   "refused write applied",
			record: func(c *Client) { c.Invoke(Write{"a", Update, 4}).Failed(errRefused) },
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Update, 4})
				f.Rows["a"] = 4
			},
			want:  []Kind{KindRefusedApplied},
			words: []string{"row a", "update a=4", "client w1", "request #6", errRefused.Error()},
		},
		{
			name:   "refused write not applied",
			record: func(c *Client) { c.Invoke(Write{"a", Update, 4}).Failed(errRefused) },
		},
		{
			name: "refused insert retried",
			record: func(c *Client) {
				c.Invoke(Write{"d", Insert, 1}).Failed(errRefused)
				ok(c, "t6", Write{"d", Insert, 2})
			},
			final: func(f *Final) {
				f.Applied["d"] = []Applied{{Insert, 2}}
				f.Rows["d"] = 2
				f.AppliedTxns["t6"] = true
			},
		},
		{
			name:  "table behind the applied sequence",
			final: func(f *Final) { f.Rows["a"] = 2 },
			want:  []Kind{KindFinalState},
			words: []string{"row a", "counter 2", "update 3"},
		},
		{
			name:  "deleted row in the table",
			final: func(f *Final) { f.Rows["b"] = 1 },
			want:  []Kind{KindFinalState},
		},
		{
			name:   "read older than an acknowledged write",
			record: func(c *Client) { observe(c, "a", 2, true) },
			want:   []Kind{KindStaleRead},
			words:  []string{"client w1", "row a", "api-1", "observed counter 2", "older than counter 3 it acknowledged"},
		},
		{
			name: "read older than an earlier read",
			record: func(c *Client) {
				c.Invoke(Write{"a", Update, 4}).Unknown(errTimeout)
				observe(c, "a", 4, true)
				observe(c, "a", 3, true)
			},
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Update, 4})
				f.Rows["a"] = 4
			},
			want:  []Kind{KindStaleRead},
			words: []string{"observed counter 3", "older than counter 4 it observed"},
		},
		{
			name:   "row seen after its acknowledged delete",
			record: func(c *Client) { observe(c, "b", 1, true) },
			want:   []Kind{KindStaleRead},
			words:  []string{"row b", "older than the delete of the row it acknowledged"},
		},
		{
			name:   "row missing though never deleted",
			record: func(c *Client) { observe(c, "a", 0, false) },
			want:   []Kind{KindStaleRead},
			words:  []string{"observed no row", "no delete of the row was sent"},
		},
		{
			name:   "value no client sent",
			record: func(c *Client) { observe(c, "a", 77, true) },
			want:   []Kind{KindStaleRead},
			words:  []string{"counter 77", "no client sent"},
		},
		{
			name: "value sent only after the read",
			record: func(c *Client) {
				observe(c, "a", 4, true)
				ok(c, "t6", Write{"a", Update, 4})
			},
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Update, 4})
				f.Rows["a"] = 4
				f.AppliedTxns["t6"] = true
			},
			want: []Kind{KindStaleRead},
		},
		{
			name: "read overlapping the write it misses",
			record: func(c *Client) {
				q := c.Invoke(Write{"a", Update, 4})
				r := c.InvokeRead("a", "api-2")
				q.OK("t6")
				r.Observed(3, true)
			},
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Update, 4})
				f.Rows["a"] = 4
				f.AppliedTxns["t6"] = true
			},
		},
		{
			name: "overlapping reads in either order",
			record: func(c *Client) {
				c.Invoke(Write{"a", Update, 4}).Unknown(errTimeout)
				r1 := c.InvokeRead("a", "api-1")
				r2 := c.InvokeRead("a", "api-2")
				r2.Observed(4, true)
				r1.Observed(3, true)
			},
		},
		{
			name: "state goes backwards",
			record: func(c *Client) {
				c.Status("t2", StateApplied)
				c.Status("t2", StateQueued)
				c.Status("t2", StateQueued)
			},
			want:  []Kind{KindStateRegression},
			words: []string{"client w1", "txn t2", "as queued", "after reading it as applied"},
		},
		{
			name:   "acknowledged transaction failed",
			record: func(c *Client) { c.Status("t2", StateFailed) },
			want:   []Kind{KindBadStatus},
			words:  []string{"txn t2", "failed", "spool_applied"},
		},
		{
			name:   "acknowledged transaction not found",
			record: func(c *Client) { c.Status("t2", StateNotFound) },
			want:   []Kind{KindBadStatus},
			words:  []string{"txn t2", "not found"},
		},
		{
			name:  "dead letter",
			final: func(f *Final) { f.DeadLetters = []DeadLetter{{Txn: "t9", Error: "23505: duplicate key"}} },
			want:  []Kind{KindDeadLetter},
			words: []string{"txn t9", "23505: duplicate key"},
		},
		{
			name:   "acknowledged transaction dead-lettered",
			record: func(c *Client) { ok(c, "t6", Write{"a", Update, 4}) },
			final:  func(f *Final) { f.DeadLetters = []DeadLetter{{Txn: "t6", Error: "23514: check violation"}} },
			want:   []Kind{KindLost, KindLost, KindDeadLetter},
		},
		{
			name: "acknowledged transaction applied in part",
			final: func(f *Final) {
				delete(f.Applied, "c")
				delete(f.Rows, "c")
			},
			want: []Kind{KindLost, KindAtomicity},
		},
		{
			name:   "unknown transaction applied in part",
			record: func(c *Client) { c.Invoke(Write{"d", Insert, 1}, Write{"e", Insert, 1}).Unknown(errTimeout) },
			final: func(f *Final) {
				f.Applied["d"] = []Applied{{Insert, 1}}
				f.Rows["d"] = 1
			},
			want:  []Kind{KindAtomicity},
			words: []string{"request #6", "client w1", "unknown", "applied [insert d=1]", "not applied [insert e=1]"},
		},
		{
			name:   "unknown write applied once",
			record: func(c *Client) { c.Invoke(Write{"a", Update, 4}).Unknown(errTimeout) },
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Update, 4})
				f.Rows["a"] = 4
			},
		},
		{
			name:   "unknown write never applied",
			record: func(c *Client) { c.Invoke(Write{"a", Update, 4}).Unknown(errTimeout) },
		},
		{
			name:   "unknown write never completed",
			record: func(c *Client) { c.Invoke(Write{"a", Update, 4}) },
		},
		{
			name:   "unknown write applied twice",
			record: func(c *Client) { c.Invoke(Write{"a", Update, 4}).Unknown(errTimeout) },
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Update, 4}, Applied{Update, 4})
				f.Rows["a"] = 4
			},
			want: []Kind{KindDuplicated},
		},
		{
			name: "unknown write read though never applied",
			record: func(c *Client) {
				c.Invoke(Write{"a", Update, 4}).Unknown(errTimeout)
				observe(c, "a", 4, true)
			},
		},
		{
			name: "unknown insert read as absent",
			record: func(c *Client) {
				c.Invoke(Write{"d", Insert, 1}).Unknown(errTimeout)
				observe(c, "d", 0, false)
			},
		},
		{
			name: "unknown delete read either way",
			record: func(c *Client) {
				c.Invoke(Write{"a", Delete, 0}).Unknown(errTimeout)
				observe(c, "a", 0, false)
			},
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Delete, 3})
				delete(f.Rows, "a")
			},
		},
		{
			name:   "row written by two clients",
			record: func(c *Client) { ok(c.h.Client("w2"), "t6", Write{"a", Update, 4}) },
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Update, 4})
				f.Rows["a"] = 4
				f.AppliedTxns["t6"] = true
			},
			want:  []Kind{KindInvalidHistory},
			words: []string{"owned by client w1"},
		},
		{
			name: "row written after an unknown outcome",
			record: func(c *Client) {
				c.Invoke(Write{"a", Update, 4}).Unknown(errTimeout)
				ok(c, "t6", Write{"a", Update, 5})
			},
			final: func(f *Final) {
				f.Applied["a"] = append(f.Applied["a"], Applied{Update, 5})
				f.Rows["a"] = 5
				f.AppliedTxns["t6"] = true
			},
			want: []Kind{KindInvalidHistory},
		},
		{
			name:   "counter not increasing",
			record: func(c *Client) { c.Invoke(Write{"a", Update, 3}).Failed(errRefused) },
			want:   []Kind{KindInvalidHistory},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := New()
			c := recordBase(h)
			if tc.record != nil {
				tc.record(c)
			}
			final := baseFinal()
			if tc.final != nil {
				tc.final(&final)
			}
			report := h.Check(final)
			t.Log(report)
			if got := kinds(report); !slices.Equal(got, tc.want) {
				t.Fatalf("kinds = %v, want %v\n%s", got, tc.want, report)
			}
			for _, w := range tc.words {
				if msg := report.Anomalies[0].Message; !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
			if again := h.Check(final); again.String() != report.String() {
				t.Errorf("a second check differs:\n%s\nthen\n%s", report, again)
			}
		})
	}
}

func kinds(r Report) []Kind {
	var ks []Kind
	for _, a := range r.Anomalies {
		ks = append(ks, a.Kind)
	}
	return ks
}

func TestCheckSortsAnomalies(t *testing.T) {
	t.Parallel()
	h := New()
	recordBase(h)
	final := baseFinal()
	final.DeadLetters = []DeadLetter{{Txn: "t8", Error: "b"}, {Txn: "t7", Error: "a"}}
	delete(final.AppliedTxns, "t3")
	delete(final.AppliedTxns, "t1")
	report := h.Check(final)
	var got []string
	for _, a := range report.Anomalies {
		got = append(got, string(a.Kind)+" "+a.Txn)
	}
	want := []string{"lost t1", "lost t3", "dead-lettered t7", "dead-lettered t8"}
	if !slices.Equal(got, want) {
		t.Fatalf("anomalies = %v, want %v", got, want)
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	h := New()
	c := recordBase(h)
	c.Invoke(Write{"d", Insert, 1}).Failed(errRefused)
	c.Invoke(Write{"e", Insert, 1}).Unknown(errTimeout)
	c.InvokeRead("a", "api-2").Unknown(errTimeout)
	c.InvokeRead("a", "api-2")
	final := baseFinal()
	final.DeadLetters = []DeadLetter{{Txn: "t9", Error: "boom"}}
	s := h.Check(final).Summary
	want := Summary{
		Clients:     1,
		Rows:        5,
		Txns:        Counts{OK: 5, Failed: 1, Unknown: 1},
		Writes:      Counts{OK: 6, Failed: 1, Unknown: 1},
		Reads:       Counts{OK: 2, Unknown: 1, Pending: 1},
		StatusReads: 3,
		Applied:     6,
		DeadLetters: 1,
	}
	if s != want {
		t.Fatalf("Summary = %+v, want %+v", s, want)
	}
	const line = "clients 1, rows 5; txns 7 (5 ok, 1 failed, 1 unknown); writes 8 (6 ok, 1 failed, 1 unknown); " +
		"reads 4 (2 ok, 1 unknown, 1 pending); status reads 3; applied changes 6; dead letters 1"
	if s.String() != line {
		t.Errorf("String() =\n%q, want\n%q", s.String(), line)
	}
}
