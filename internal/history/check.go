package history

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Kind is the class of an anomaly.
type Kind string

// The anomalies the checker reports.
const (
	// KindLost: an acknowledged write never applied, or an acknowledged
	// transaction missing from spool_applied.
	KindLost Kind = "lost"
	// KindDuplicated: a write applied more than once.
	KindDuplicated Kind = "duplicated"
	// KindReordered: a row's writes applied in another order than its
	// owner issued them.
	KindReordered Kind = "reordered"
	// KindPhantom: an applied change no client sent.
	KindPhantom Kind = "phantom"
	// KindRefusedApplied: an applied write whose request was refused (4xx).
	KindRefusedApplied Kind = "refused-applied"
	// KindFinalState: the final table disagrees with the row's last applied
	// or last acknowledged write.
	KindFinalState Kind = "final-state"
	// KindStaleRead: a read older than what its client had acknowledged or
	// observed, or a read of a value never sent.
	KindStaleRead Kind = "stale-read"
	// KindStateRegression: a client saw a transaction's state go backwards.
	KindStateRegression Kind = "state-regression"
	// KindBadStatus: a status read answered failed or not found for an
	// acknowledged transaction.
	KindBadStatus Kind = "bad-status"
	// KindDeadLetter: a dead-lettered transaction (the workload sends only
	// valid writes).
	KindDeadLetter Kind = "dead-lettered"
	// KindAtomicity: a transaction applied in part.
	KindAtomicity Kind = "atomicity"
	// KindInvalidHistory: the harness broke the workload's rules (a row
	// written by two clients, counters not increasing, a write after a
	// delete or after an unknown outcome, ...), so other findings on the
	// same rows may be wrong.
	KindInvalidHistory Kind = "invalid-history"
)

// kindOrder is the order reports list kinds in: a broken workload first,
// as it casts doubt on the rest, then the write path, reads, states and
// dead letters.
var kindOrder = []Kind{
	KindInvalidHistory, KindLost, KindDuplicated, KindReordered, KindPhantom,
	KindRefusedApplied, KindFinalState, KindAtomicity, KindStaleRead,
	KindStateRegression, KindBadStatus, KindDeadLetter,
}

// Anomaly is one finding. Row, Txn and Client name what it is about where
// they apply; Message says it all in words.
type Anomaly struct {
	Kind    Kind
	Row     string
	Txn     string
	Client  string
	Message string
}

// String returns the anomaly as "kind: message".
func (a Anomaly) String() string { return string(a.Kind) + ": " + a.Message }

// Report is what Check found.
type Report struct {
	// Anomalies are sorted by kind, then row, transaction, client and
	// message, so a report is the same for the same history.
	Anomalies []Anomaly
	Summary   Summary
}

// String returns the summary, then each anomaly on a line of its own.
func (r Report) String() string {
	var b strings.Builder
	b.WriteString(r.Summary.String())
	fmt.Fprintf(&b, "; %d anomalies", len(r.Anomalies))
	for _, a := range r.Anomalies {
		b.WriteString("\n  ")
		b.WriteString(a.String())
	}
	return b.String()
}

// Check compares the history recorded so far with the final state and
// reports every anomaly. Requests and reads not yet completed are checked
// as of unknown outcome; call Check once the workload has stopped.
func (h *History) Check(final Final) Report {
	c := h.snapshot(final)
	c.index()
	c.checkRows()
	c.checkTxns()
	c.checkAcknowledgedState()
	c.checkReads()
	c.checkStatuses()
	c.checkDeadLetters()
	c.sort()
	return Report{Anomalies: c.anomalies, Summary: c.summary()}
}

// checker holds a copy of the history and the indexes built over it.
type checker struct {
	start    time.Time
	final    Final
	clients  int
	requests []*request
	reads    []*read
	statuses []status

	rows      map[string]*row     // by key
	acked     map[string]*request // acknowledged requests by transaction id
	anomalies []Anomaly
	troubled  map[string]bool // rows with an anomaly on their write path
}

// row gathers what the history says about one row.
type row struct {
	key     string
	owner   string
	writes  []*rowWrite         // in the order the owner issued them
	byValue map[int64]*rowWrite // inserts and updates by counter
	del     *rowWrite           // the first delete not refused, if any
}

// rowWrite is one write of a request, placed in its row's history.
type rowWrite struct {
	Write
	req     *request
	pos     int // index in row.writes
	idx     int // index in req.writes
	applied int // how often it appears in the applied sequence
}

// maybe reports whether the write's request may or may not have been
// applied: its outcome is unknown, or it never completed.
func (w *rowWrite) maybe() bool {
	return w.req.outcome == outcomeUnknown || w.req.outcome == outcomePending
}

// snapshot copies the history under its lock.
func (h *History) snapshot(final Final) *checker {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := &checker{
		start:    h.start,
		final:    final,
		clients:  len(h.clients),
		statuses: slices.Clone(h.statuses),
		rows:     make(map[string]*row),
		acked:    make(map[string]*request),
		troubled: make(map[string]bool),
	}
	for _, r := range h.requests {
		cp := *r
		c.requests = append(c.requests, &cp)
	}
	for _, r := range h.reads {
		cp := *r
		c.reads = append(c.reads, &cp)
	}
	return c
}

// addf reports an anomaly of kind k about a row, a transaction and a
// client (each empty where it does not apply).
func (c *checker) addf(k Kind, rowKey, txID, client, format string, args ...any) {
	c.anomalies = append(c.anomalies, Anomaly{Kind: k, Row: rowKey, Txn: txID, Client: client, Message: fmt.Sprintf(format, args...)})
}

// at formats a time as an offset from the history's start.
func (c *checker) at(t time.Time) string {
	return "+" + t.Sub(c.start).Truncate(time.Microsecond).String()
}

// row returns the row called key, creating it.
func (c *checker) row(key string) *row {
	r := c.rows[key]
	if r == nil {
		r = &row{key: key, byValue: make(map[int64]*rowWrite)}
		c.rows[key] = r
	}
	return r
}

// index places every write in its row, checking the workload's rules as it
// goes, and indexes acknowledged requests by transaction id.
func (c *checker) index() {
	for _, q := range c.requests {
		if q.outcome == outcomeOK {
			switch prev := c.acked[q.txID]; {
			case q.txID == "":
				c.addf(KindInvalidHistory, "", "", q.client, "%s of client %s was acknowledged without a transaction id", q.label(), q.client)
			case prev != nil:
				c.addf(KindInvalidHistory, "", q.txID, q.client, "txn %s acknowledged twice: to request #%d of client %s and request #%d of client %s",
					q.txID, prev.seq, prev.client, q.seq, q.client)
			default:
				c.acked[q.txID] = q
			}
		}
		if len(q.writes) == 0 {
			c.addf(KindInvalidHistory, "", q.txID, q.client, "%s of client %s carries no writes", q.label(), q.client)
		}
		for i, w := range q.writes {
			c.place(q, i, w)
		}
	}
}

// place adds one write to its row's history.
func (c *checker) place(q *request, idx int, w Write) {
	invalid := func(format string, args ...any) {
		c.addf(KindInvalidHistory, w.Row, q.txID, q.client, "%s (%s of client %s): %s", w, q.label(), q.client, fmt.Sprintf(format, args...))
	}
	if w.Row == "" {
		invalid("the write names no row")
		return
	}
	if !w.Op.valid() {
		invalid("unknown op %q", w.Op)
		return
	}
	r := c.row(w.Row)
	if r.owner == "" {
		r.owner = q.client
	} else if r.owner != q.client {
		invalid("row %s is owned by client %s", w.Row, r.owner)
	}
	// The rules concern what came before this write in other requests
	// (writes of one request are applied together) and what was not
	// refused (a refused write never happened).
	for _, prev := range slices.Backward(r.writes) {
		if prev.req == q || prev.req.outcome == outcomeFailed {
			continue
		}
		if prev.maybe() {
			invalid("written after %s, whose outcome is unknown", prev.Write)
		}
		break
	}
	for _, prev := range r.writes {
		if prev.req.outcome == outcomeFailed {
			continue
		}
		if prev.Op == Delete {
			invalid("written after %s was sent", prev.Write)
			break
		}
		if w.Op == Insert && q.outcome != outcomeFailed {
			invalid("an insert comes first, but %s was sent before", prev.Write)
			break
		}
	}
	rw := &rowWrite{Write: w, req: q, pos: len(r.writes), idx: idx}
	if w.Op == Delete {
		rw.Counter = 0
		if q.outcome != outcomeFailed && r.del == nil {
			r.del = rw
		}
	} else {
		for _, prev := range slices.Backward(r.writes) {
			if prev.Op == Delete {
				continue
			}
			if prev.Counter >= w.Counter {
				invalid("its counter is not above %d, written before by %s", prev.Counter, prev.Write)
			}
			break
		}
		if _, dup := r.byValue[w.Counter]; !dup {
			r.byValue[w.Counter] = rw
		}
	}
	r.writes = append(r.writes, rw)
}

// sort puts the anomalies in report order.
func (c *checker) sort() {
	rank := make(map[Kind]int, len(kindOrder))
	for i, k := range kindOrder {
		rank[k] = i
	}
	slices.SortFunc(c.anomalies, func(a, b Anomaly) int {
		return cmp.Or(
			cmp.Compare(rank[a.Kind], rank[b.Kind]),
			cmp.Compare(a.Row, b.Row),
			cmp.Compare(a.Txn, b.Txn),
			cmp.Compare(a.Client, b.Client),
			cmp.Compare(a.Message, b.Message),
		)
	})
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
