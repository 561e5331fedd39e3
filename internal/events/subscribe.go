package events

import (
	"context"
	"fmt"
	"slices"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/txn"
)

// Filter is what a subscription follows: a table's rows that match a
// query (the list route's filters), and transactions' states.
type Filter struct {
	// Query is the table and its filters; nil follows no table.
	Query *query.Query
	// Transactions are the ids whose states the subscription gets.
	Transactions []string
}

// Subscription is one subscriber's place in the hub: the messages to send
// first (Backlog), then those on C, until Done.
type Subscription struct {
	hub    *Hub
	filter Filter
	ch     chan *Message
	done   chan struct{}
	reason string // why Done closed; set before
	// behind is signalled when the buffer (ch) filled: lagging is set,
	// and the messages after queued are read from the hub's history
	// (CatchUp) instead of handed to ch.
	behind  chan struct{}
	lagging bool
	// queued is where what the subscription has been given ends: the
	// last message handed to ch or returned by CatchUp (or, before any,
	// the hub's head when it subscribed).
	queued Cursor

	// after: messages at or before it are not for this subscription (a
	// cursor another process's hub gave, ahead of this one's).
	after Cursor

	// Pos is where the subscription starts: a snapshot taken now holds
	// what came before it; every message after it is sent.
	Pos Cursor
	// Reset is set when the cursor asked for cannot be resumed from: the
	// subscriber gets a reset, then a snapshot.
	Reset bool
	// Snapshot is set when the subscriber needs a snapshot (a new
	// subscription, or a reset).
	Snapshot bool
	// Backlog is what to send before C: the messages after the cursor
	// resumed from, in order.
	Backlog []*Message
}

// C is the subscription's messages after Backlog.
func (s *Subscription) C() <-chan *Message { return s.ch }

// Behind is signalled when C's buffer filled: once C is drained, CatchUp
// returns the messages that come next.
func (s *Subscription) Behind() <-chan struct{} { return s.behind }

// CatchUp returns, from the hub's history, the messages for s after those
// handed to C, which it must have drained, and hands the messages after
// them to C again. A subscription that fell further behind than the
// history reaches is closed instead ("slow"), and CatchUp returns nil.
func (s *Subscription) CatchUp() []*Message {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; !ok || !s.lagging {
		return nil
	}
	if h.lostLocked(s) {
		return nil
	}
	msgs := h.filterLocked(s, h.sinceLocked(s.queued))
	s.lagging, s.queued = false, h.head
	delete(h.lagging, s)
	h.delivered.Add(int64(len(msgs)))
	return msgs
}

// Done is closed when the hub closes the subscription; Reason says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Reason is why the hub closed the subscription.
func (s *Subscription) Reason() string {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.reason
}

// Close ends the subscription (the subscriber went away). Safe twice.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.removeLocked(s)
}

// Subscribe subscribes f, from after (nil: from now, with a snapshot).
// A cursor that cannot be resumed from gives a subscription with Reset
// set. It fails with ErrFull past Config.MaxSubscribers and ErrClosed
// once the hub stopped. ctx bounds the reads of a resume from the stream.
func (h *Hub) Subscribe(ctx context.Context, f Filter, after *Cursor) (*Subscription, error) {
	s := &Subscription{hub: h, filter: f, ch: make(chan *Message, h.cfg.Buffer), done: make(chan struct{}), behind: make(chan struct{}, 1)}
	h.mu.Lock()
	switch {
	case h.stopped:
		h.mu.Unlock()
		return nil, ErrClosed
	case len(h.subs) >= h.cfg.MaxSubscribers:
		h.mu.Unlock()
		return nil, ErrFull
	}
	h.addLocked(s)
	s.Pos, s.queued = h.head, h.head
	catchUp := false
	switch {
	case after == nil:
		s.Snapshot = true
	case h.cfg.Intake != nil && (after.A != h.epoch || after.Compare(h.evicted) < 0 || after.Compare(h.head) > 0):
		s.Reset, s.Snapshot = true, true
	case after.Compare(h.head) > 0: // another process's hub is ahead
		s.after, s.Pos = *after, *after
	case after.Compare(h.evicted) >= 0:
		s.Backlog, s.Pos = h.sinceLocked(*after), *after // filtered once resolved, below
	default:
		catchUp = true
		s.Backlog, s.Pos = h.sinceLocked(h.evicted), *after
	}
	upTo := h.evicted
	h.mu.Unlock()

	// The rows of the backlog that were never made (nobody followed their
	// table then) are made now, before the backlog is filtered.
	s.Backlog = slices.DeleteFunc(s.Backlog, func(m *Message) bool {
		return m.Type == TypeRow && (f.Query == nil || m.Table != f.Query.Table.Name)
	})
	h.resolve(ctx, s.Backlog)
	var err error
	switch {
	case s.Backlog != nil && !catchUp:
		h.mu.Lock()
		s.Backlog = h.filterLocked(s, s.Backlog)
		h.mu.Unlock()
	case catchUp:
		var older []*Message
		older, err = h.catchUp(ctx, *after, upTo)
		h.mu.Lock()
		if older == nil {
			s.Reset, s.Snapshot, s.Backlog, s.Pos = true, true, nil, upTo
		} else {
			s.Backlog = h.filterLocked(s, append(older, s.Backlog...))
		}
		h.mu.Unlock()
	case !s.Snapshot && s.after != (Cursor{}):
		var ok bool
		if ok, err = h.inStream(ctx, *after); !ok {
			h.mu.Lock()
			s.Reset, s.Snapshot, s.after = true, true, Cursor{}
			h.mu.Unlock()
		}
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.Reset {
		h.resets.Add(1)
	}
	return s, nil
}

// inStream tells whether the entry of c is in the events stream.
func (h *Hub) inStream(ctx context.Context, c Cursor) (bool, error) {
	recs, err := h.cfg.Stream.RangeEvents(ctx, c.Entry(), 1)
	if err != nil {
		return false, fmt.Errorf("events: resume: %w", err)
	}
	return len(recs) == 1 && recs[0].Pos == c.Entry(), nil
}

// catchUp reads from the events stream the messages after cursor after
// and up to upTo, where the hub's history starts; nil if the stream no
// longer holds after's entry, or more than Config.CatchUp entries follow
// it.
func (h *Hub) catchUp(ctx context.Context, after, upTo Cursor) ([]*Message, error) {
	if h.cfg.Stream == nil {
		return nil, nil
	}
	recs, err := h.cfg.Stream.RangeEvents(ctx, after.Entry(), h.cfg.CatchUp+1)
	if err != nil {
		return nil, fmt.Errorf("events: resume: %w", err)
	}
	if len(recs) == 0 || recs[0].Pos != after.Entry() {
		return nil, nil // trimmed, or never was
	}
	var keep []changes.Record
	reached := false
	for _, r := range recs {
		c, err := entryCursor(r.Pos)
		if err != nil {
			return nil, fmt.Errorf("events: resume: %w", err)
		}
		if c.Compare(Cursor{A: upTo.A, B: upTo.B}) > 0 {
			reached = true
			break
		}
		keep = append(keep, r)
	}
	if !reached && len(recs) > h.cfg.CatchUp {
		return nil, nil
	}
	entries := make([]entryChanges, len(keep))
	for i, r := range keep {
		entries[i].cs = r.Changes
	}
	rows := h.readRows(ctx, touchedRows(entries))
	out := []*Message{}
	for _, r := range keep {
		entry, _ := entryCursor(r.Pos)
		for _, m := range h.messages(entry, r.Changes, rows, nil) {
			if m.Cursor.Compare(after) > 0 && m.Cursor.Compare(upTo) <= 0 {
				out = append(out, m)
			}
		}
	}
	return out, nil
}

func (h *Hub) addLocked(s *Subscription) {
	h.subs[s] = struct{}{}
	if q := s.filter.Query; q != nil {
		index(h.byTable, q.Table.Name, s)
	}
	for _, id := range s.filter.Transactions {
		index(h.byTx, id, s)
	}
}

func index(m map[string]map[*Subscription]struct{}, k string, s *Subscription) {
	set := m[k]
	if set == nil {
		set = map[*Subscription]struct{}{}
		m[k] = set
	}
	set[s] = struct{}{}
}

func unindex(m map[string]map[*Subscription]struct{}, k string, s *Subscription) {
	if set := m[k]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// removeLocked takes s out of the hub; it reports whether s was in it.
func (h *Hub) removeLocked(s *Subscription) bool {
	if _, ok := h.subs[s]; !ok {
		return false
	}
	delete(h.subs, s)
	delete(h.lagging, s)
	if q := s.filter.Query; q != nil {
		unindex(h.byTable, q.Table.Name, s)
	}
	for _, id := range s.filter.Transactions {
		unindex(h.byTx, id, s)
	}
	return true
}

// dropLocked closes s with reason.
func (h *Hub) dropLocked(s *Subscription, reason string) {
	if h.removeLocked(s) {
		s.reason = reason
		close(s.done)
	}
}

// filterLocked keeps the messages s wants.
func (h *Hub) filterLocked(s *Subscription, msgs []*Message) []*Message {
	out := msgs[:0:0]
	for _, m := range msgs {
		if h.wantsLocked(s, m) {
			out = append(out, m)
		}
	}
	return out
}

// offerLocked hands m to s if s wants it. A subscription whose buffer is
// full is never waited for: it reads on from the history once it has
// drained its buffer (Subscription.CatchUp), and is closed if it falls
// further behind than the history reaches.
func (h *Hub) offerLocked(s *Subscription, m *Message) {
	if s.lagging || !h.wantsLocked(s, m) {
		return
	}
	select {
	case s.ch <- m:
		s.queued = m.Cursor
		h.delivered.Add(1)
	default:
		s.lagging = true
		h.lagging[s] = struct{}{}
		select {
		case s.behind <- struct{}{}:
		default:
		}
	}
}

// lostLocked closes s, and reports true, if the history no longer holds
// every message after what s was given.
func (h *Hub) lostLocked(s *Subscription) bool {
	if s.queued.Compare(h.evicted) >= 0 {
		return false
	}
	h.slow.Add(1)
	h.dropLocked(s, fmt.Sprintf("slow: more than %d messages behind", len(h.ring)))
	return true
}

// wantsLocked tells whether m is for s: a followed transaction's state; a
// row of its table that matches its filter, or that leaves it.
func (h *Hub) wantsLocked(s *Subscription, m *Message) bool {
	if s.after != (Cursor{}) && m.Cursor.Compare(s.after) <= 0 {
		return false // another process's hub gave s a cursor ahead of m
	}
	if m.Type == TypeTransaction {
		for _, id := range s.filter.Transactions {
			if id == m.TxID {
				return true
			}
		}
		return false
	}
	q := s.filter.Query
	if q == nil || q.Table.Name != m.Table {
		return false
	}
	if len(q.Conds) == 0 || m.ReadErr != "" || (m.Row != nil && q.Match(m.Row)) {
		return true
	}
	// The row does not match (or is gone): sent if it did before, so the
	// subscriber drops it; if that is not known, sent unless it is new.
	if m.prevKnown {
		return m.prev != nil && q.Match(m.prev)
	}
	return m.Op != txn.Insert
}
