package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// errNotExposed marks an operation on a table clients cannot use (spool's
// own key-value table): it makes no message.
var errNotExposed = errors.New("table not exposed")

// readRows reads, once each, every row a queued or failed change of cs
// touches, as the smart read returns it now, a few at a time.
func (h *Hub) readRows(ctx context.Context, cs []changes.Change) map[rowRef]rowRead {
	var refs []rowRef
	seen := map[rowRef]bool{}
	for _, c := range cs {
		if c.Tx == nil || (c.State != txn.Queued && c.State != txn.Failed) {
			continue
		}
		for _, op := range c.Tx.Operations {
			r := rowRef{op.Table, op.ID}
			if !seen[r] {
				seen[r] = true
				refs = append(refs, r)
			}
		}
	}
	out := make(map[rowRef]rowRead, len(refs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, readParallel)
	for _, r := range refs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rr := h.readRow(ctx, r)
			mu.Lock()
			out[r] = rr
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// readRow reads one row, trying again a few times if it cannot.
func (h *Hub) readRow(ctx context.Context, r rowRef) rowRead {
	t, err := h.cfg.Reader.Table(r.table)
	if err != nil {
		return rowRead{err: errNotExposed}
	}
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, readTimeout)
		row, _, found, err := h.cfg.Reader.Get(rctx, t, r.id, gateway.Smart)
		cancel()
		switch {
		case err == nil && found:
			return rowRead{row: row}
		case err == nil:
			return rowRead{}
		case attempt == readAttempts || ctx.Err() != nil:
			return rowRead{err: fmt.Errorf("read %s/%s: %w", r.table, r.id, err)}
		}
		sleep(ctx, wait)
		wait *= 4
	}
}

// messages turns the changes of one entry into its messages: for a queued
// or failed transaction a row message per operation (the row as read),
// then a transaction message for each change.
func (h *Hub) messages(entry Cursor, cs []changes.Change, rows map[rowRef]rowRead) []*Message {
	var out []*Message
	add := func(m *Message) {
		m.Cursor = Cursor{A: entry.A, B: entry.B, I: uint32(len(out))}
		out = append(out, m)
	}
	for _, c := range cs {
		if c.Tx != nil && (c.State == txn.Queued || c.State == txn.Failed) {
			for _, op := range c.Tx.Operations {
				rr := rows[rowRef{op.Table, op.ID}]
				if errors.Is(rr.err, errNotExposed) {
					continue
				}
				m := &Message{Type: TypeRow, Table: op.Table, ID: op.ID, Op: op.Op, Row: rr.row, TxID: c.ID, State: c.State}
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
