package history

import (
	"fmt"
	"slices"
	"strings"
)

// checkRows holds each row's applied sequence against the writes sent to
// it (lost, duplicated, reordered, phantom and refused writes) and the final
// table against the row's last applied change.
func (c *checker) checkRows() {
	keys := make(map[string]bool)
	for k := range c.rows {
		keys[k] = true
	}
	for k := range c.final.Applied {
		keys[k] = true
	}
	for k := range c.final.Rows {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		before := len(c.anomalies)
		c.checkRow(c.row(k))
		if len(c.anomalies) > before {
			c.troubled[k] = true
		}
	}
}

// checkRow checks one row's applied sequence and final value.
func (c *checker) checkRow(r *row) {
	applied := c.final.Applied[r.key]
	// Match each applied change to the write that sent it: an insert or
	// update by its counter (unique per row), a delete to the row's delete.
	var firsts []*rowWrite // the writes not refused, by first application
	for i, a := range applied {
		var w *rowWrite
		switch a.Op {
		case Insert, Update:
			w = r.byValue[a.Counter]
		case Delete:
			w = r.del
			if w == nil {
				w = r.refusedDelete()
			}
		default:
			c.addf(KindPhantom, r.key, "", r.owner, "row %s: applied change #%d has unknown op %q", r.key, i+1, a.Op)
			continue
		}
		if w == nil {
			c.addf(KindPhantom, r.key, "", r.owner, "row %s: applied change #%d, %s, was sent by no client", r.key, i+1, a)
			continue
		}
		w.applied++
		if w.applied == 1 && w.req.outcome != outcomeFailed {
			firsts = append(firsts, w)
		}
	}

	for _, w := range r.writes {
		q := w.req
		switch {
		case q.outcome == outcomeFailed && w.applied > 0:
			c.addf(KindRefusedApplied, r.key, q.txID, q.client, "row %s: %s of client %s (%s) was refused with %q at %s, yet applied %s",
				r.key, w.Write, q.client, q.label(), q.err, c.at(q.completed), times(w.applied))
		case w.applied > 1:
			c.addf(KindDuplicated, r.key, q.txID, q.client, "row %s: %s of client %s (%s, %s) was applied %s",
				r.key, w.Write, q.client, q.label(), q.outcome, times(w.applied))
		case q.outcome == outcomeOK && w.applied == 0:
			c.addf(KindLost, r.key, q.txID, q.client, "row %s: %s of client %s, acknowledged as txn %s at %s, was never applied",
				r.key, w.Write, q.client, q.txID, c.at(q.completed))
		}
	}

	// The owner issues a row's writes in order (the insert first, values
	// rising, the delete last), so they must be applied in that order.
	sorted := slices.IsSortedFunc(firsts, func(a, b *rowWrite) int { return a.pos - b.pos })
	if !sorted {
		issued := slices.SortedFunc(slices.Values(firsts), func(a, b *rowWrite) int { return a.pos - b.pos })
		c.addf(KindReordered, r.key, "", r.owner, "row %s of client %s: applied as [%s], issued as [%s]",
			r.key, r.owner, writeList(firsts), writeList(issued))
	}

	wantPresent, want := false, int64(0)
	if n := len(applied); n > 0 && applied[n-1].Op != Delete {
		wantPresent, want = true, applied[n-1].Counter
	}
	got, present := c.final.Rows[r.key]
	if present != wantPresent || got != want {
		last := "no change was applied to it"
		if n := len(applied); n > 0 {
			last = fmt.Sprintf("its last applied change is %s", applied[n-1])
		}
		c.addf(KindFinalState, r.key, "", r.owner, "row %s: the table holds %s, but %s", r.key, tableValue(got, present), last)
	}
}

// refusedDelete returns a refused delete of the row, if one was sent.
func (r *row) refusedDelete() *rowWrite {
	for _, w := range r.writes {
		if w.Op == Delete && w.req.outcome == outcomeFailed {
			return w
		}
	}
	return nil
}

// checkTxns reports acknowledged transactions missing from spool_applied
// and transactions applied in part.
func (c *checker) checkTxns() {
	placed := make(map[*request][]*rowWrite)
	for _, r := range c.rows {
		for _, w := range r.writes {
			placed[w.req] = append(placed[w.req], w)
		}
	}
	for _, q := range c.requests {
		if q.outcome == outcomeOK && q.txID != "" && !c.final.AppliedTxns[q.txID] {
			c.addf(KindLost, "", q.txID, q.client, "txn %s, acknowledged to client %s at %s, is missing from spool_applied",
				q.txID, q.client, c.at(q.completed))
		}
		ws := placed[q]
		if len(ws) < 2 || q.outcome == outcomeFailed {
			continue // a refused request applied is reported write by write
		}
		var in, out []*rowWrite
		for _, w := range ws {
			if w.applied > 0 {
				in = append(in, w)
			} else {
				out = append(out, w)
			}
		}
		if len(in) > 0 && len(out) > 0 {
			byOrder := func(a, b *rowWrite) int { return a.idx - b.idx }
			slices.SortFunc(in, byOrder)
			slices.SortFunc(out, byOrder)
			c.addf(KindAtomicity, "", q.txID, q.client, "%s of client %s (%s) was applied in part: applied [%s], not applied [%s]",
				q.label(), q.client, q.outcome, writeList(in), writeList(out))
		}
	}
}

// checkAcknowledgedState holds the final table against each row's last
// acknowledged write when nothing of unknown outcome came after it. Rows
// with an anomaly on their write path are skipped: that anomaly explains
// the difference.
func (c *checker) checkAcknowledgedState() {
	for _, k := range sortedKeys(c.rows) {
		r := c.rows[k]
		if c.troubled[k] {
			continue
		}
		var last *rowWrite
		for _, w := range slices.Backward(r.writes) {
			if w.req.outcome != outcomeFailed {
				last = w
				break
			}
		}
		if last == nil || last.req.outcome != outcomeOK {
			continue
		}
		wantPresent, want := last.Op != Delete, last.Counter
		got, present := c.final.Rows[k]
		if present != wantPresent || (present && got != want) {
			c.addf(KindFinalState, k, last.req.txID, r.owner, "row %s: the table holds %s, but the last write, %s acknowledged to client %s as txn %s at %s, left %s",
				k, tableValue(got, present), last.Write, r.owner, last.req.txID, c.at(last.req.completed), tableValue(want, wantPresent))
		}
	}
}

// times formats a count of applications.
func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// tableValue describes a row of the final table.
func tableValue(counter int64, present bool) string {
	if !present {
		return "no row"
	}
	return fmt.Sprintf("counter %d", counter)
}

// writeList formats writes as "insert a=1, update a=2".
func writeList(ws []*rowWrite) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.Write.String()
	}
	return strings.Join(s, ", ")
}
