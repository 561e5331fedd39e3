package events

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// rowRef names one row.
type rowRef struct{ table, id string }

// rowRead is a row as the hub read it: nil if it is not there; err if it
// could not be read.
type rowRead struct {
	row schema.Row
	err error
}

// errNotExposed is the read error of a row of a table clients cannot use
// (spool's key-value table, or one gone from the catalog).
var errNotExposed = errors.New("table not exposed")

// rowKeys are the keys of rows to read, by table, each once.
type rowKeys map[string][]string

// keysOf collects refs by table, each once; nil if none.
func keysOf(refs iter.Seq[rowRef]) rowKeys {
	var out rowKeys
	var seen map[rowRef]bool
	for r := range refs {
		if out == nil {
			out, seen = rowKeys{}, map[rowRef]bool{}
		}
		if !seen[r] {
			seen[r] = true
			out[r.table] = append(out[r.table], r.id)
		}
	}
	return out
}

// touchedRows returns every row a queued or failed change of entries
// touches that its message needs read: the rows their messages carry, but
// for those an operation decides alone (decided).
func touchedRows(entries []entryChanges) rowKeys {
	return keysOf(func(yield func(rowRef) bool) {
		for _, e := range entries {
			for _, c := range e.cs {
				if c.Tx == nil || (c.State != txn.Queued && c.State != txn.Failed) {
					continue
				}
				for _, op := range c.Tx.Operations {
					if _, ok := decided(c, op); ok {
						continue
					}
					if !yield(rowRef{op.Table, op.ID}) {
						return
					}
				}
			}
		}
	})
}

// decided returns the row a queued operation leaves when it decides it
// alone, with no read: an insert's values, where the change carries them
// (a local log's transaction, a shared log's events entry); nothing after
// a delete. It is the row as of the operation, as the smart read returns
// it then (Pending.Apply starts afresh from an insert or a delete); a read
// made later would show later changes too, which have messages of their
// own.
func decided(c changes.Change, op txn.Operation) (schema.Row, bool) {
	switch {
	case c.State != txn.Queued:
		return nil, false
	case op.Op == txn.Delete:
		return nil, true
	case op.Op == txn.Insert && op.Values != nil:
		return op.Values, true
	}
	return nil, false
}

// readRows reads the rows of keys as the smart read returns them now: the
// rows of each table with one read of the overlay and one of the database
// per readBatch rows.
func (h *Hub) readRows(ctx context.Context, keys rowKeys) map[rowRef]rowRead {
	out := map[rowRef]rowRead{}
	for table, ks := range keys {
		t, err := h.cfg.Reader.Table(table)
		if err != nil {
			for _, k := range ks {
				out[rowRef{table, k}] = rowRead{err: errNotExposed}
			}
			continue
		}
		for chunk := range slices.Chunk(ks, readBatch) {
			rows, err := h.readMany(ctx, t, chunk)
			for i, k := range chunk {
				if err != nil {
					out[rowRef{table, k}] = rowRead{err: err}
				} else {
					out[rowRef{table, k}] = rowRead{row: rows[i]}
				}
			}
		}
	}
	return out
}

// readMany reads rows of one table, trying again a few times if it
// cannot.
func (h *Hub) readMany(ctx context.Context, t *schema.Table, keys []string) ([]schema.Row, error) {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, readTimeout)
		rows, err := h.cfg.Reader.GetMany(rctx, t, keys, gateway.Smart)
		cancel()
		switch {
		case err == nil:
			return rows, nil
		case attempt == readAttempts || ctx.Err() != nil:
			return nil, fmt.Errorf("read %d rows of %s: %w", len(keys), t.Name, err)
		}
		sleep(ctx, wait)
		wait *= 4
	}
}

// messages turns the changes of one entry into its messages: for a queued
// or failed transaction a row message per operation (the row decided or
// read; unresolved if it was not read: see Message.unresolved), then a
// transaction message for each change. A row an operation decides alone
// is left unresolved too, and made when it is resolved, if followed (not
// nil) says nobody follows its table.
func (h *Hub) messages(entry Cursor, cs []changes.Change, rows map[rowRef]rowRead, followed func(table string) bool) []*Message {
	var out []*Message
	add := func(m *Message) {
		m.Cursor = Cursor{A: entry.A, B: entry.B, I: uint32(len(out))}
		out = append(out, m)
	}
	for _, c := range cs {
		if c.Tx != nil && (c.State == txn.Queued || c.State == txn.Failed) {
			for _, op := range c.Tx.Operations {
				t, err := h.cfg.Reader.Table(op.Table)
				if err != nil {
					continue // a table clients cannot use (spool's key-value table)
				}
				m := &Message{Type: TypeRow, Table: op.Table, ID: op.ID, Op: op.Op, TxID: c.ID, State: c.State}
				if row, ok := decided(c, op); ok {
					m.Row, m.decided = row, true
					if followed != nil && !followed(op.Table) {
						m.unresolved = true
					} else {
						m.complete(t)
					}
					add(m)
					continue
				}
				rr, read := rows[rowRef{op.Table, op.ID}]
				m.Row, m.unresolved = rr.row, !read
				if rr.err != nil {
					m.ReadErr = rr.err.Error()
				}
				add(m)
			}
		}
		m := &Message{Type: TypeTransaction, TxID: c.ID, State: c.State, LSN: c.LSN, Code: c.Code}
		if c.Err != nil {
			m.Err = c.Err.Error()
		}
		add(m)
	}
	return out
}

// resolve reads the rows of the unresolved messages of msgs, as the smart
// read returns them now, and fills them in (a decided row needs no read).
// ctx bounds the reads.
func (h *Hub) resolve(ctx context.Context, msgs []*Message) {
	h.mu.Lock() // another subscription may be resolving them
	keys := keysOf(func(yield func(rowRef) bool) {
		for _, m := range msgs {
			if m.Type == TypeRow && m.unresolved && !m.decided && !yield(rowRef{m.Table, m.ID}) {
				return
			}
		}
	})
	h.mu.Unlock()
	rows := h.readRows(ctx, keys)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range msgs {
		if m.Type != TypeRow || !m.unresolved {
			continue
		}
		if m.decided {
			if t, err := h.cfg.Reader.Table(m.Table); err == nil {
				m.complete(t)
			}
			m.unresolved = false
			continue
		}
		rr := rows[rowRef{m.Table, m.ID}]
		m.Row, m.unresolved = rr.row, false
		if rr.err != nil {
			m.ReadErr = rr.err.Error()
		}
	}
}
