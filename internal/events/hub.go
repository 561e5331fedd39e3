package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// Defaults of Config. A zero field takes its default.
const (
	// DefaultHistory is 50,000 messages kept to resume from: a write of
	// one row makes four (its row and three states), so some 12,000
	// writes, seconds of a busy log; a message holds its row, so tens of
	// MiB at most.
	DefaultHistory = 50_000
	// DefaultBuffer is 512 messages waiting for one subscriber's
	// connection: 2,000 subscribers' buffers cost 8 MiB of pointers. A
	// subscriber whose buffer fills (a burst, a slow link) reads on from
	// the history, which all subscribers share; one further behind than
	// the history reaches is closed, with its cursor to resume from.
	DefaultBuffer = 512
	// DefaultMaxSubscribers is 2,000 subscribers per process: each is a
	// connection, a goroutine and a buffer; more get 503.
	DefaultMaxSubscribers = 2000
	// DefaultHeartbeat is 15 s between heartbeats on an idle connection:
	// under the 30–60 s after which proxies commonly cut idle streams.
	DefaultHeartbeat = 15 * time.Second
	// DefaultWriteTimeout is 10 s for one write to a subscriber's
	// connection: a client that reads nothing for that long is gone.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultCatchUp is 20,000 entries of the events stream read to
	// resume a cursor older than History (Redis): seconds of reads of
	// their rows; a cursor further behind gets a reset and a snapshot.
	DefaultCatchUp = 20_000
	// DefaultLastRows is 100,000 rows whose last state the hub keeps, so
	// that a change taking a row out of a subscriber's filter is sent to
	// it (and no other change of a row outside it is); the state of a row
	// it does not keep is unknown, and such a change goes to every
	// filtered subscriber of the table. Some tens of MiB.
	DefaultLastRows = 100_000
)

// Tuning of the hub's reads.
const (
	// readTimeout bounds one read of rows.
	readTimeout = 2 * time.Second
	// readAttempts is how many times rows that cannot be read are tried
	// before their messages go out with the error instead.
	readAttempts = 3
	// readBatch is the most rows of one table read at once.
	readBatch = 500
	// streamBatch and streamBlock are one read of the events stream.
	streamBatch = 1000
	streamBlock = 250 * time.Millisecond
)

// ErrFull is returned by Subscribe past Config.MaxSubscribers.
var ErrFull = errors.New("events: too many subscribers")

// ErrClosed is returned by Subscribe once the hub stopped.
var ErrClosed = errors.New("events: stopped")

// Reader reads rows as the smart read does (gateway.Gateway).
type Reader interface {
	Table(name string) (*schema.Table, error)
	// GetMany reads rows by canonical key: rows[i] is keys[i]'s, nil if
	// none.
	GetMany(ctx context.Context, t *schema.Table, keys []string, c gateway.Consistency) ([]schema.Row, error)
}

// Stream is a shared log's events stream (redislog.Log).
type Stream interface {
	// ReadEvents returns up to count records after position after,
	// waiting up to block for one. An insert's values (which let the hub
	// make its row without a read) come only for tables values says yes
	// to; nil values means every table.
	ReadEvents(ctx context.Context, after string, count int, block time.Duration, values func(table string) bool) ([]changes.Record, error)
	// RangeEvents returns up to count records from position from, on,
	// with every insert's values.
	RangeEvents(ctx context.Context, from string, count int) ([]changes.Record, error)
	// EventBounds returns the first and last positions kept ("0-0" if
	// none).
	EventBounds(ctx context.Context) (first, last string, err error)
}

// Config is what a Hub is built from: a Reader, and either an Intake
// (local log) or a Stream (shared log).
type Config struct {
	Reader Reader
	Intake *Intake
	Stream Stream
	// History is how many messages are kept to resume from. Default
	// DefaultHistory.
	History int
	// Buffer is how many messages may wait for one subscriber. Default
	// DefaultBuffer.
	Buffer int
	// MaxSubscribers caps subscribers. Default DefaultMaxSubscribers.
	MaxSubscribers int
	// Heartbeat is the interval of heartbeats to an idle subscriber.
	// Default DefaultHeartbeat.
	Heartbeat time.Duration
	// WriteTimeout bounds one write to a subscriber. Default
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// CatchUp is the most stream entries read to resume one cursor.
	// Default DefaultCatchUp.
	CatchUp int
	// LastRows is how many rows' last states the hub keeps. Default
	// DefaultLastRows.
	LastRows int
	Logger   *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.History, DefaultHistory)
	def(&c.Buffer, DefaultBuffer)
	def(&c.MaxSubscribers, DefaultMaxSubscribers)
	def(&c.CatchUp, DefaultCatchUp)
	def(&c.LastRows, DefaultLastRows)
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Hub resolves changes into messages once, keeps the recent ones, and
// fans them out to subscribers.
type Hub struct {
	cfg   Config
	epoch uint64 // a local log's: the A of every cursor

	mu sync.Mutex
	// ring holds the last messages, oldest at start: every message after
	// evicted and up to head.
	ring     []*Message
	start, n int
	evicted  Cursor // the last message to leave the ring (or the start)
	head     Cursor // after every message so far
	seq      uint64 // a local log's entries
	subs     map[*Subscription]struct{}
	lagging  map[*Subscription]struct{} // whose buffer filled: see offerLocked
	byTable  map[string]map[*Subscription]struct{}
	byTx     map[string]map[*Subscription]struct{}
	stopped  bool
	// last is each row's state in the last message about it (nil: gone),
	// kept by the hub's goroutine alone; emptied when it grows past
	// Config.LastRows.
	last map[rowRef]schema.Row

	lifeMu sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	delivered atomic.Int64
	slow      atomic.Int64
	resets    atomic.Int64
}

// New returns a hub; Start starts it.
func New(cfg Config) (*Hub, error) {
	switch {
	case cfg.Reader == nil:
		return nil, errors.New("events: a hub needs a reader")
	case (cfg.Intake == nil) == (cfg.Stream == nil):
		return nil, errors.New("events: a hub needs an intake (local log) or a stream (shared log), not both")
	}
	cfg = cfg.withDefaults()
	h := &Hub{cfg: cfg, ring: make([]*Message, cfg.History), subs: map[*Subscription]struct{}{}, lagging: map[*Subscription]struct{}{},
		byTable: map[string]map[*Subscription]struct{}{}, byTx: map[string]map[*Subscription]struct{}{}, last: map[rowRef]schema.Row{}}
	if cfg.Intake != nil {
		h.newEpoch()
	}
	return h, nil
}

// newEpoch starts a new run of local cursors: every earlier one gets a
// reset.
func (h *Hub) newEpoch() {
	h.epoch = max(uint64(time.Now().UnixMilli()), h.epoch+1)
	h.seq = 0
	h.head = Cursor{A: h.epoch}
	h.evicted = h.head
}

// Heartbeat is the interval of heartbeats to idle subscribers.
func (h *Hub) Heartbeat() time.Duration { return h.cfg.Heartbeat }

// WriteTimeout bounds one write to a subscriber.
func (h *Hub) WriteTimeout() time.Duration { return h.cfg.WriteTimeout }

// Start starts resolving changes in the background until Stop. On a
// shared log, it starts from the stream's last entry.
func (h *Hub) Start(ctx context.Context) error {
	h.lifeMu.Lock()
	defer h.lifeMu.Unlock()
	if h.done != nil {
		return errors.New("events: hub already started")
	}
	var last string
	if h.cfg.Stream != nil {
		var err error
		if _, last, err = h.cfg.Stream.EventBounds(ctx); err != nil {
			return fmt.Errorf("events: start: %w", err)
		}
		c, err := entryCursor(last)
		if err != nil {
			return fmt.Errorf("events: start: %w", err)
		}
		h.mu.Lock()
		h.head = Cursor{A: c.A, B: c.B, I: endOfEntry}
		h.evicted = h.head
		h.mu.Unlock()
	}
	ctx, h.cancel = context.WithCancel(ctx)
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		if h.cfg.Stream != nil {
			h.readStream(ctx, last)
		} else {
			h.drainIntake(ctx)
		}
	}()
	return nil
}

// Stop closes every subscription ("shutting down") and stops. Safe twice
// and before Start.
func (h *Hub) Stop() {
	h.CloseAll("shutting down")
	h.lifeMu.Lock()
	cancel, done := h.cancel, h.done
	h.lifeMu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// CloseAll closes every subscription with reason and takes no more (an
// HTTP server shutting down: its streams must end for it to).
func (h *Hub) CloseAll(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for s := range h.subs {
		h.dropLocked(s, reason)
	}
}

// Stats are the hub's counters.
type Stats struct {
	Subscribers int    `json:"subscribers"`
	Delivered   int64  `json:"delivered"`
	SlowClosed  int64  `json:"slow_closed"`
	Resets      int64  `json:"resets"`
	Head        string `json:"head"`
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Subscribers: len(h.subs), Delivered: h.delivered.Load(), SlowClosed: h.slow.Load(), Resets: h.resets.Load(), Head: h.head.String()}
}

// entryChanges are the changes of one entry of the log's events (a local
// log's: one change, its cursor drawn when it is published).
type entryChanges struct {
	entry Cursor
	cs    []changes.Change
}

// emit turns entries into messages and publishes them, in order. It reads
// the rows of the tables someone follows, and leaves the others'
// unresolved (read if a subscriber resumes from before them): a hub with
// no subscriber reads nothing. Whether a table is followed is checked
// again under the lock the messages are published under: a subscription
// that began meanwhile gets its rows read before they go out.
func (h *Hub) emit(ctx context.Context, entries []entryChanges) {
	touched := touchedRows(entries)
	var rows map[rowRef]rowRead
	for {
		h.mu.Lock()
		var more rowKeys // the rows of tables followed since the last look
		for t, keys := range touched {
			if len(h.byTable[t]) > 0 {
				if more == nil {
					more = rowKeys{}
				}
				more[t] = keys
				delete(touched, t)
			}
		}
		if len(more) == 0 {
			for _, e := range entries {
				if h.cfg.Intake != nil {
					h.seq++
					e.entry = Cursor{A: h.epoch, B: h.seq}
				}
				h.publishLocked(h.track(h.messages(e.entry, e.cs, rows, h.followedLocked)), e.entry)
			}
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		if rows == nil {
			rows = map[rowRef]rowRead{}
		}
		maps.Copy(rows, h.readRows(ctx, more))
	}
}

// followed tells whether a subscription follows table.
func (h *Hub) followed(table string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.followedLocked(table)
}

// followedLocked tells whether a subscription follows table.
func (h *Hub) followedLocked(table string) bool { return len(h.byTable[table]) > 0 }

// publishLocked appends an entry's messages to the ring and hands each to
// the subscriptions that want it; head moves past the entry.
func (h *Hub) publishLocked(msgs []*Message, entry Cursor) {
	for _, m := range msgs {
		if h.n == len(h.ring) {
			h.evicted = h.ring[h.start].Cursor
			h.ring[h.start] = nil
			h.start = (h.start + 1) % len(h.ring)
			h.n--
		}
		h.ring[(h.start+h.n)%len(h.ring)] = m
		h.n++
		var subs map[*Subscription]struct{}
		if m.Type == TypeRow {
			subs = h.byTable[m.Table]
		} else {
			subs = h.byTx[m.TxID]
		}
		for s := range subs {
			h.offerLocked(s, m)
		}
	}
	h.head = Cursor{A: entry.A, B: entry.B, I: endOfEntry}
	for s := range h.lagging {
		h.lostLocked(s)
	}
}

// since returns the messages of the ring after c.
func (h *Hub) sinceLocked(c Cursor) []*Message {
	at := func(i int) *Message { return h.ring[(h.start+i)%len(h.ring)] }
	i := sort.Search(h.n, func(i int) bool { return at(i).Cursor.Compare(c) > 0 })
	out := make([]*Message, 0, h.n-i)
	for ; i < h.n; i++ {
		out = append(out, at(i))
	}
	return out
}

// lose forgets the history after a gap in what the hub heard (its intake
// overflowed, or the stream was trimmed past it): every subscription is
// closed, and every cursor from before gets a reset.
func (h *Hub) lose(why string) {
	h.cfg.Logger.Warn("live events: changes lost; every subscriber is closed and resets", "why", why)
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		h.dropLocked(s, "lagging: "+why)
	}
	clear(h.ring)
	h.start, h.n = 0, 0
	if h.cfg.Intake != nil {
		h.newEpoch()
	} else {
		h.evicted = h.head
	}
}

// drainIntake is a local log's loop: it takes the intake's changes, holds
// each queued transaction until its append is known to have succeeded
// (logged, or a later state) and drops it if refused, and publishes the
// rest in the order they came.
func (h *Hub) drainIntake(ctx context.Context) {
	var q holdQueue
	var cs, spare []changes.Change
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.cfg.Intake.wake:
		}
		var lost bool
		cs, lost = h.cfg.Intake.take(spare)
		if lost {
			h.lose("the hub fell behind the writes (intake full)")
			q = holdQueue{}
		} else {
			for _, c := range cs {
				q.add(c)
			}
			if ready := q.ready(); len(ready) > 0 {
				h.emit(ctx, ready)
			}
		}
		spare = cs
	}
}

// holdQueue is a local log's changes waiting for the hub to publish them,
// in the order they came: a queued transaction waits for its append to
// succeed (changes.Change.Logged, or a later state of it). Its slices are
// reused from one batch to the next.
type holdQueue struct {
	fifo    []held // waiting from fifo[head] on
	head    int
	dropped int            // changes taken off fifo's front for good
	waiting map[string]int // a queued transaction's place: dropped + its index in fifo
	out     []changes.Change
	entries []entryChanges
}

// held is a change of a local log waiting for the hub to publish it.
type held struct {
	c       changes.Change
	ready   bool
	refused bool
}

// add takes in one change.
func (q *holdQueue) add(c changes.Change) {
	if q.waiting == nil {
		q.waiting = map[string]int{}
	}
	p, waits := q.waiting[c.ID]
	switch {
	case c.State == txn.Queued && (c.Refused || c.Logged):
		if waits {
			q.fifo[p-q.dropped].ready, q.fifo[p-q.dropped].refused = true, c.Refused
			delete(q.waiting, c.ID)
		}
	case c.State == txn.Queued: // published before its append
		q.waiting[c.ID] = q.dropped + len(q.fifo)
		q.fifo = append(q.fifo, held{c: c})
	default: // a later state: it was in the log
		if waits {
			q.fifo[p-q.dropped].ready = true
			delete(q.waiting, c.ID)
		}
		q.fifo = append(q.fifo, held{c: c, ready: true})
	}
}

// ready takes the changes at the front that may be published, as entries
// of one change each (refused ones dropped). The entries are valid until
// the next call.
func (q *holdQueue) ready() []entryChanges {
	n := 0
	for q.head+n < len(q.fifo) && q.fifo[q.head+n].ready {
		n++
	}
	q.out, q.entries = q.out[:0], q.entries[:0]
	taken := q.fifo[q.head : q.head+n]
	for _, e := range taken {
		if !e.refused {
			q.out = append(q.out, e.c)
		}
	}
	for i := range q.out {
		q.entries = append(q.entries, entryChanges{cs: q.out[i : i+1 : i+1]})
	}
	clear(taken) // no transaction stays pinned
	q.head += n
	switch {
	case q.head == len(q.fifo):
		q.dropped += len(q.fifo)
		q.fifo, q.head = q.fifo[:0], 0
	case q.head >= 1024 && 2*q.head >= len(q.fifo):
		left := copy(q.fifo, q.fifo[q.head:])
		clear(q.fifo[left:])
		q.dropped += q.head
		q.fifo, q.head = q.fifo[:left], 0
	}
	return q.entries
}

// readStream is a shared log's loop: blocking reads of the events stream
// from the last entry read.
func (h *Hub) readStream(ctx context.Context, last string) {
	wait := 10 * time.Millisecond
	var warned time.Time
	for ctx.Err() == nil {
		recs, err := h.cfg.Stream.ReadEvents(ctx, last, streamBatch, streamBlock, h.followed)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if time.Since(warned) > 10*time.Second {
				warned = time.Now()
				h.cfg.Logger.Warn("live events: read the events stream; trying again", "err", err, "wait", wait)
			}
			sleep(ctx, wait)
			wait = min(2*wait, time.Second)
			continue
		}
		wait = 10 * time.Millisecond
		if len(recs) == streamBatch {
			// Behind: make sure nothing after last was trimmed meanwhile.
			first, _, err := h.cfg.Stream.EventBounds(ctx)
			if err == nil && comparePos(first, last) > 0 {
				h.lose("the events stream was trimmed past this process's position")
			}
		}
		batch := make([]entryChanges, 0, len(recs))
		for _, r := range recs {
			entry, err := entryCursor(r.Pos)
			if err != nil {
				h.cfg.Logger.Error("live events: bad events stream position", "err", err)
				continue
			}
			batch = append(batch, entryChanges{entry: entry, cs: r.Changes})
		}
		h.emit(ctx, batch)
		if len(recs) > 0 {
			last = recs[len(recs)-1].Pos
		}
	}
}

// track gives each row message the row's state before it, and records
// the state after it (unknown for an unresolved message). Only the hub's
// goroutine calls it, in order.
func (h *Hub) track(msgs []*Message) []*Message {
	if len(h.last) > h.cfg.LastRows {
		clear(h.last)
	}
	for _, m := range msgs {
		if m.Type != TypeRow {
			continue
		}
		r := rowRef{m.Table, m.ID}
		if m.ReadErr != "" || m.unresolved {
			delete(h.last, r)
			continue
		}
		m.prev, m.prevKnown = h.last[r]
		h.last[r] = m.Row
	}
	return msgs
}

// comparePos compares two stream ids.
func comparePos(a, b string) int {
	ca, errA := entryCursor(a)
	cb, errB := entryCursor(b)
	if errA != nil || errB != nil {
		return 0
	}
	return ca.Compare(cb)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
