package history

import (
	"fmt"
	"slices"
)

// version is a point in a row's history a read saw or must see at least:
// the position of a write in the order its owner issued them (-1 for the
// row before any write), and where the client learnt of it.
type version struct {
	pos int
	why string
}

var noVersion = version{pos: -1}

// checkReads holds every answered read to what its client knew when it
// sent it: the writes it had seen acknowledged and what its reads that had
// already answered observed.
func (c *checker) checkReads() {
	type key struct{ client, row string }
	groups := make(map[key][]*read)
	for _, d := range c.reads {
		if d.outcome == outcomeOK {
			k := key{d.client, d.row}
			groups[k] = append(groups[k], d)
		}
	}
	for k, reads := range groups {
		c.checkReadsOf(k.client, c.row(k.row), reads)
	}
}

// checkReadsOf checks one client's reads of one row. A sweep in invocation
// order gathers, for each read, the newest version among the client's
// writes acknowledged before it was sent and among its reads answered
// before it was sent (those were judged already: they were sent earlier).
func (c *checker) checkReadsOf(client string, r *row, reads []*read) {
	var acks []*rowWrite
	for _, w := range r.writes {
		if w.req.client == client && w.req.outcome == outcomeOK {
			acks = append(acks, w)
		}
	}
	slices.SortStableFunc(acks, func(a, b *rowWrite) int { return a.req.completed.Compare(b.req.completed) })
	byInvoke := slices.SortedStableFunc(slices.Values(reads), func(a, b *read) int { return a.invoked.Compare(b.invoked) })
	byDone := slices.SortedStableFunc(slices.Values(reads), func(a, b *read) int { return a.completed.Compare(b.completed) })

	saw := make(map[*read]version) // the version each judged read saw, if it may be built on
	acked, observed := noVersion, noVersion
	i, j := 0, 0
	for _, d := range byInvoke {
		for ; i < len(acks) && acks[i].req.completed.Before(d.invoked); i++ {
			if w := acks[i]; w.pos > acked.pos {
				acked = version{w.pos, fmt.Sprintf("%s it acknowledged at %s", writeSeen(w), c.at(w.req.completed))}
			}
		}
		for ; j < len(byDone) && byDone[j].completed.Before(d.invoked); j++ {
			if v, found := saw[byDone[j]]; found && v.pos > observed.pos {
				observed = v
			}
		}
		least := acked
		if observed.pos > least.pos {
			least = observed
		}
		if v, found := c.judgeRead(r, d, least); found {
			saw[d] = v
		}
	}
}

// judgeRead reports read d if it saw a version older than least or one
// that cannot be, and returns the version it saw if later reads may be
// held to it.
func (c *checker) judgeRead(r *row, d *read, least version) (version, bool) {
	stale := func(format string, args ...any) {
		c.addf(KindStaleRead, r.key, "", d.client, "client %s read row %s through %s (sent at %s, answered at %s) and observed %s, %s",
			d.client, r.key, d.api, c.at(d.invoked), c.at(d.completed), d.observed(), fmt.Sprintf(format, args...))
	}
	seen := fmt.Sprintf("%s it observed through %s at %s", d.observed(), d.api, c.at(d.completed))
	if d.present {
		w := r.byValue[d.counter]
		switch {
		case w == nil:
			stale("which no client sent")
			return version{}, false
		case w.req.outcome == outcomeFailed:
			stale("written by %s of client %s, which was refused", w.req.label(), w.req.client)
			return version{}, false
		case w.req.invoked.After(d.completed):
			stale("which client %s sent only at %s", w.req.client, c.at(w.req.invoked))
			return version{}, false
		case w.pos < least.pos:
			stale("older than %s", least.why)
		}
		return version{w.pos, seen}, true
	}
	// No row: the row before its insert, or after its delete.
	switch {
	case least.pos < 0:
		return noVersion, true
	case r.del != nil && (least.pos == r.del.pos || r.del.req.invoked.Before(d.completed)):
		return version{r.del.pos, seen}, true
	case r.del != nil:
		stale("though it knew of %s, and its delete was sent only at %s", least.why, c.at(r.del.req.invoked))
	default:
		stale("though it knew of %s, and no delete of the row was sent", least.why)
	}
	return version{}, false
}

// writeSeen describes what a write left of its row.
func writeSeen(w *rowWrite) string {
	if w.Op == Delete {
		return "the delete of the row"
	}
	return fmt.Sprintf("counter %d", w.Counter)
}

// checkStatuses holds each client's status reads of a transaction to the
// order of states, and reports failed and not found answers for
// acknowledged transactions. Each finding is reported once per client and
// transaction, at its first occurrence.
func (c *checker) checkStatuses() {
	type key struct {
		client, txID string
		kind         Kind
		state        State
	}
	reported := make(map[key]bool)
	once := func(k key) bool {
		if reported[k] {
			return false
		}
		reported[k] = true
		return true
	}
	type txnOf struct{ client, txID string }
	newest := make(map[txnOf]status)
	for _, s := range c.statuses {
		q := c.acked[s.txID]
		if q == nil {
			if once(key{s.client, s.txID, KindInvalidHistory, ""}) {
				c.addf(KindInvalidHistory, "", s.txID, s.client, "client %s read the status of txn %s, which no client had acknowledged", s.client, s.txID)
			}
			continue
		}
		read := fmt.Sprintf("client %s read txn %s (acknowledged at %s) as %s at %s", s.client, s.txID, c.at(q.completed), s.state, c.at(s.at))
		switch s.state {
		case StateNotFound:
			if once(key{s.client, s.txID, KindBadStatus, s.state}) {
				c.addf(KindBadStatus, "", s.txID, s.client, "%s", read)
			}
		case StateFailed:
			why := "though it carries only valid writes"
			if c.final.AppliedTxns[s.txID] {
				why = "though it is in spool_applied"
			}
			if once(key{s.client, s.txID, KindBadStatus, s.state}) {
				c.addf(KindBadStatus, "", s.txID, s.client, "%s, %s", read, why)
			}
		case StateQueued, StateApplied, StateReplicated:
			t := txnOf{s.client, s.txID}
			prev, found := newest[t]
			if !found || s.state.rank() >= prev.state.rank() {
				newest[t] = s
				continue
			}
			if once(key{s.client, s.txID, KindStateRegression, ""}) {
				c.addf(KindStateRegression, "", s.txID, s.client, "%s, after reading it as %s at %s", read, prev.state, c.at(prev.at))
			}
		default:
			if once(key{s.client, s.txID, KindInvalidHistory, s.state}) {
				c.addf(KindInvalidHistory, "", s.txID, s.client, "%s, which is no state", read)
			}
		}
	}
}

// checkDeadLetters reports every dead letter: the workload sends only
// valid writes.
func (c *checker) checkDeadLetters() {
	for _, d := range c.final.DeadLetters {
		client, who := "", "acknowledged to no client"
		if q := c.acked[d.Txn]; q != nil {
			client, who = q.client, fmt.Sprintf("acknowledged to client %s at %s", q.client, c.at(q.completed))
		}
		c.addf(KindDeadLetter, "", d.Txn, client, "txn %s (%s) was dead-lettered: %s", d.Txn, who, d.Error)
	}
}
