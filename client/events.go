package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Event is one message of a subscription (GET /v1/events): Type is
// "snapshot" (Rows), "row" (ID, Op, Row, TransactionID, State),
// "transaction" (TransactionID, State, LSN, Error, Code), "reset" (a new
// snapshot follows: the cursor resumed from was too old) or "close"
// (Reason: the server ended the stream; Next resumes after it).
type Event struct {
	Type          string `json:"type"`
	Cursor        string `json:"cursor"`
	Table         string `json:"table,omitempty"`
	Rows          []Row  `json:"rows,omitempty"`
	ID            string `json:"id,omitempty"`
	Op            string `json:"op,omitempty"`
	Row           Row    `json:"row,omitempty"`
	TransactionID string `json:"transaction_id,omitempty"`
	State         string `json:"state,omitempty"`
	LSN           string `json:"lsn,omitempty"`
	Error         string `json:"error,omitempty"`
	Code          string `json:"code,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// Subscription is a live stream of a table's changes (and of followed
// transactions' states). Next returns them in order; if the stream breaks
// (the server restarts, a proxy cuts it, the server closes a subscriber
// that fell behind), Next reconnects once from the last cursor it
// returned, so no change is missed. Close it when done.
type Subscription struct {
	c      *Client
	ctx    context.Context
	path   string
	query  url.Values
	cursor string
	body   io.ReadCloser
	r      *bufio.Reader
}

// Subscribe follows table's rows matching q (as List filters them; Order
// and Limit do not apply), and the states of transactions (nil: none).
// With table "", it follows only the transactions.
func (c *Client) Subscribe(ctx context.Context, table string, transactions []string, q ...Query) (*Subscription, error) {
	v := url.Values{}
	if table != "" {
		v.Set("table", table)
	}
	for _, id := range transactions {
		v.Add("transaction", id)
	}
	for _, x := range q {
		if x.err != nil {
			return nil, x.err
		}
		if x.key != "order" && x.key != "limit" {
			v.Add(x.key, x.value)
		}
	}
	s := &Subscription{c: c, ctx: ctx, path: "/v1/events", query: v}
	if err := s.connect(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Subscription) connect() error {
	u := *s.c.base
	u.Path += s.path
	u.RawQuery = s.query.Encode()
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("spool client: subscribe: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if s.c.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.c.token)
	}
	if s.cursor != "" {
		req.Header.Set("Last-Event-ID", s.cursor)
	}
	res, err := s.c.http.Do(req)
	if err != nil {
		return fmt.Errorf("spool client: subscribe: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		answer, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		res.Body.Close()
		return newError(http.MethodGet, s.path, res, answer)
	}
	s.body, s.r = res.Body, bufio.NewReader(res.Body)
	return nil
}

// Next returns the next event, waiting for it.
func (s *Subscription) Next() (Event, error) {
	for retried := false; ; retried = true {
		ev, err := s.read()
		if err == nil {
			if ev.Cursor != "" {
				s.cursor = ev.Cursor
			}
			if ev.Type == "close" {
				s.body.Close()
				if err := s.connect(); err != nil {
					return Event{}, err
				}
			}
			return ev, nil
		}
		if s.ctx.Err() != nil || retried {
			return Event{}, fmt.Errorf("spool client: events: %w", err)
		}
		s.body.Close()
		if err := s.connect(); err != nil {
			return Event{}, err
		}
	}
}

// read reads one SSE event: its data lines, up to a blank line; comment
// lines (heartbeats) are skipped.
func (s *Subscription) read() (Event, error) {
	var data bytes.Buffer
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return Event{}, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data.Len() == 0 {
				continue
			}
			var ev Event
			dec := json.NewDecoder(&data)
			dec.UseNumber()
			if err := dec.Decode(&ev); err != nil {
				return Event{}, fmt.Errorf("decode event: %w", err)
			}
			return ev, nil
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

// Cursor is the cursor of the last event Next returned: pass it to a
// later Subscribe's server (Last-Event-ID) to resume after it.
func (s *Subscription) Cursor() string { return s.cursor }

// Close ends the subscription.
func (s *Subscription) Close() error { return s.body.Close() }
