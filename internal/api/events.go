package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/spoolgw/spool/internal/events"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// MaxFollowed bounds the transactions one subscription follows.
const MaxFollowed = 100

// eventsParams are the query parameters of GET /v1/events that are not
// the list route's filters.
var eventsParams = []string{"table", "transaction", "after"}

// subscribeEvents serves GET /v1/events: a snapshot of a table's rows that
// match the list route's filters, then every change to them and every
// state of the followed transactions, over Server-Sent Events or, asked
// with Upgrade: websocket, a WebSocket.
func (s *Server) subscribeEvents(w http.ResponseWriter, r *http.Request) error {
	if s.events == nil {
		return errorf(http.StatusNotFound, "live events are not served by this process")
	}
	params := r.URL.Query()
	f, c, err := s.eventsFilter(params)
	if err != nil {
		return err
	}
	after, err := eventsCursor(r, params)
	if err != nil {
		return err
	}
	sub, err := s.events.Subscribe(r.Context(), f, after)
	switch {
	case errors.Is(err, events.ErrFull), errors.Is(err, events.ErrClosed):
		w.Header().Set("Retry-After", "1")
		return errorf(http.StatusServiceUnavailable, "%v; retry later, or on another process", err)
	case err != nil:
		return err
	}
	defer sub.Close()
	// Taken before anything is written, so a failure is a plain answer.
	first, err := s.eventsFirst(r.Context(), sub, f, c)
	if err != nil {
		return err
	}
	// A stream outlives any write or read timeout of the server: each
	// write below sets its own deadline.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})  // not every writer supports it
	_ = rc.SetWriteDeadline(time.Time{}) // (httptest's recorder); nothing to undo
	var out eventWriter
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			s.logger.Debug("websocket refused", "err", err)
			return nil // Accept answered
		}
		out = &wsWriter{conn: conn, timeout: s.events.WriteTimeout(), ctx: conn.CloseRead(r.Context())}
	} else {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		out = &sseWriter{w: w, rc: rc, timeout: s.events.WriteTimeout(), ctxDone: r.Context().Done()}
	}
	s.streamEvents(out, sub, first)
	return nil
}

// eventsFilter reads the table, its filters and the followed
// transactions.
func (s *Server) eventsFilter(params url.Values) (events.Filter, gateway.Consistency, error) {
	var f events.Filter
	c, err := gateway.ParseConsistency(params.Get("consistency"))
	if err != nil {
		return f, c, err
	}
	for _, id := range params["transaction"] {
		if !txn.ValidID(id) {
			return f, c, errorf(http.StatusBadRequest, "transaction id must be a UUID, not %q", id)
		}
		f.Transactions = append(f.Transactions, id)
	}
	if len(f.Transactions) > MaxFollowed {
		return f, c, errorf(http.StatusBadRequest, "at most %d transactions per subscription, not %d", MaxFollowed, len(f.Transactions))
	}
	name := params.Get("table")
	filters := url.Values{}
	for k, v := range params {
		if !contains(eventsParams, k) {
			filters[k] = v
		}
	}
	switch {
	case name == "" && len(f.Transactions) == 0:
		return f, c, errorf(http.StatusBadRequest, "name a table (?table=T, with the list route's filters) or transactions (?transaction=ID) to follow")
	case name == "" && len(filters) > 0:
		return f, c, errorf(http.StatusBadRequest, "filters need a table (?table=T)")
	case name == "":
		return f, c, nil
	case len(params["table"]) > 1:
		return f, c, errorf(http.StatusBadRequest, "one table per subscription")
	}
	t, err := s.gw.Table(name)
	if err != nil {
		return f, c, errorf(http.StatusNotFound, "%v", err)
	}
	if t.Key == nil {
		return f, c, errorf(http.StatusBadRequest, "table %q has no single-column primary key: its rows cannot be followed", t.Name)
	}
	if f.Query, err = query.Parse(t, filters); err != nil {
		return f, c, err
	}
	return f, c, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// eventsCursor is where a subscriber resumes: Last-Event-ID (SSE's
// reconnection) over ?after=.
func eventsCursor(r *http.Request, params url.Values) (*events.Cursor, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = params.Get("after")
	}
	if v == "" {
		return nil, nil
	}
	c, err := events.ParseCursor(v)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	return &c, nil
}

// frame is one message as a transport sends it; a transaction message
// also names its transaction and state.
type frame struct {
	typ    string
	cursor events.Cursor
	data   []byte
	tx     string
	state  txn.State
}

// messageFrame is m as a transport sends it.
func messageFrame(m *events.Message) frame {
	return frame{typ: m.Type, cursor: m.Cursor, data: m.JSON(), tx: m.TxID, state: m.State}
}

// eventsFirst is what a subscriber gets before the changes: a reset if
// its cursor could not be resumed from; then, unless it resumes, the
// snapshot of its table and the state of each followed transaction,
// read after its position was fixed.
func (s *Server) eventsFirst(ctx context.Context, sub *events.Subscription, f events.Filter, c gateway.Consistency) ([]frame, error) {
	var out []frame
	if sub.Reset {
		out = append(out, frame{typ: events.TypeReset, cursor: sub.Pos, data: events.ControlJSON(events.TypeReset, "the cursor is older than what is kept, or unknown here: a new snapshot follows", sub.Pos)})
	}
	if !sub.Snapshot {
		return out, nil
	}
	var table string
	var rows []schema.Row
	if f.Query != nil {
		var err error
		if rows, _, err = s.gw.List(ctx, f.Query, c); err != nil {
			return nil, err
		}
		table = f.Query.Table.Name
	}
	data, err := events.SnapshotJSON(table, rows, sub.Pos)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	out = append(out, frame{typ: events.TypeSnapshot, cursor: sub.Pos, data: data})
	for _, id := range f.Transactions {
		st, found, err := s.gw.Status(ctx, id)
		if err != nil {
			return nil, err
		}
		if found {
			m := &events.Message{Type: events.TypeTransaction, Cursor: sub.Pos, TxID: id, State: st.State, Err: st.Error, Code: st.Code}
			out = append(out, messageFrame(m))
		}
	}
	return out, nil
}

// streamEventsBatch is the most messages written between two flushes.
const streamEventsBatch = 64

// streamEvents writes first, the backlog, then each message as it comes,
// with heartbeats, until the subscription or the connection ends; a
// subscription the hub closes gets a close message with the cursor of the
// last message written.
func (s *Server) streamEvents(out eventWriter, sub *events.Subscription, first []frame) {
	defer out.end()
	last := sub.Pos
	// The state each followed transaction was last sent in: a state read
	// for the first frames may be reached again by a message after the
	// subscription's position, and a state is sent once, in order.
	sent := map[string]txn.State{}
	write := func(f frame) error {
		if f.typ == events.TypeTransaction {
			if st, ok := sent[f.tx]; ok && st.Reached(f.state) {
				return nil
			}
			sent[f.tx] = f.state
		}
		if err := out.write(f); err != nil {
			return err
		}
		last = f.cursor
		return nil
	}
	for _, f := range first {
		if write(f) != nil {
			return
		}
	}
	for _, m := range sub.Backlog {
		if write(messageFrame(m)) != nil {
			return
		}
	}
	if out.flush() != nil {
		return
	}
	hb := time.NewTicker(s.events.Heartbeat())
	defer hb.Stop()
	for {
		select {
		case <-out.done():
			return
		case <-sub.Done():
			_ = out.write(frame{typ: events.TypeClose, cursor: last, data: events.ControlJSON(events.TypeClose, sub.Reason(), last)})
			_ = out.flush()
			return
		case <-hb.C:
			if out.heartbeat() != nil {
				return
			}
		case <-sub.Behind():
			// The buffer filled: drain it, then read on from the history.
			var err error
		drain:
			for err == nil {
				select {
				case m := <-sub.C():
					err = write(messageFrame(m))
				default:
					break drain
				}
			}
			for _, m := range sub.CatchUp() {
				if err != nil {
					break
				}
				err = write(messageFrame(m))
			}
			if err != nil || out.flush() != nil {
				return
			}
		case m := <-sub.C():
			err := write(messageFrame(m))
		more:
			for n := 1; err == nil && n < streamEventsBatch; n++ {
				select {
				case m := <-sub.C():
					err = write(messageFrame(m))
				default:
					break more
				}
			}
			if err != nil || out.flush() != nil {
				return
			}
		}
	}
}

// eventWriter is one transport of live events.
type eventWriter interface {
	write(f frame) error
	flush() error
	heartbeat() error
	// done is closed when the client went away.
	done() <-chan struct{}
	end()
}

// sseWriter writes Server-Sent Events: the type in event:, the cursor in
// id: (what a browser's EventSource sends back as Last-Event-ID).
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	ctxDone <-chan struct{}
}

func (s *sseWriter) deadline() { _ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout)) }

func (s *sseWriter) write(f frame) error {
	s.deadline()
	if _, err := fmt.Fprintf(s.w, "event: %s\nid: %s\ndata: %s\n\n", f.typ, f.cursor, f.data); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	return nil
}

func (s *sseWriter) flush() error {
	s.deadline()
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush events: %w", err)
	}
	return nil
}

func (s *sseWriter) heartbeat() error {
	s.deadline()
	if _, err := fmt.Fprint(s.w, ": heartbeat\n\n"); err != nil {
		return fmt.Errorf("write heartbeat: %w", err)
	}
	return s.flush()
}

func (s *sseWriter) done() <-chan struct{} { return s.ctxDone }

func (s *sseWriter) end() {}

// wsWriter writes each message as a JSON text frame; heartbeats are
// pings.
type wsWriter struct {
	conn    *websocket.Conn
	ctx     context.Context // ends when the client closes
	timeout time.Duration
	closing bool // a close message went: end without a handshake
}

func (s *wsWriter) write(f frame) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	if f.typ == events.TypeClose {
		// A subscriber too slow for its buffer may not answer a closing
		// handshake: the close message says it all.
		s.closing = true
	}
	if err := s.conn.Write(ctx, websocket.MessageText, f.data); err != nil {
		return fmt.Errorf("write websocket message: %w", err)
	}
	return nil
}

func (s *wsWriter) flush() error { return nil }

func (s *wsWriter) heartbeat() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping websocket: %w", err)
	}
	return nil
}

func (s *wsWriter) done() <-chan struct{} { return s.ctx.Done() }

func (s *wsWriter) end() {
	if s.closing || s.ctx.Err() != nil {
		_ = s.conn.CloseNow()
		return
	}
	_ = s.conn.Close(websocket.StatusNormalClosure, "")
}
