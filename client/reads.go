package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Row is a row, as spool reads it (numbers as json.Number).
type Row map[string]any

// Query is a filter, order, limit or consistency of a List; make one with
// Eq, Neq, Lt, Lte, Gt, Gte, In, IsNull, NotNull, Order, Limit or
// FromDatabase.
type Query struct {
	key, value string
	err        error
}

func cond(col, op string, v any) Query { return Query{key: col, value: op + "." + text(v)} }

// text is v as a filter names it: times in RFC 3339 with nanoseconds.
func text(v any) string {
	switch v := v.(type) {
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(v)
}

// Eq selects rows whose col equals v.
func Eq(col string, v any) Query { return cond(col, "eq", v) }

// Neq selects rows whose col differs from v.
func Neq(col string, v any) Query { return cond(col, "neq", v) }

// Lt selects rows whose col is less than v.
func Lt(col string, v any) Query { return cond(col, "lt", v) }

// Lte selects rows whose col is at most v.
func Lte(col string, v any) Query { return cond(col, "lte", v) }

// Gt selects rows whose col is greater than v.
func Gt(col string, v any) Query { return cond(col, "gt", v) }

// Gte selects rows whose col is at least v.
func Gte(col string, v any) Query { return cond(col, "gte", v) }

// In selects rows whose col is one of vs (no value may hold a comma).
func In(col string, vs ...any) Query {
	items := make([]string, len(vs))
	for i, v := range vs {
		items[i] = text(v)
		if strings.ContainsAny(items[i], ",()") {
			return Query{err: fmt.Errorf("spool client: In(%q): value %q holds a comma or parenthesis, which spool's in.(…) cannot carry", col, items[i])}
		}
	}
	return Query{key: col, value: "in.(" + strings.Join(items, ",") + ")"}
}

// IsNull selects rows whose col is NULL.
func IsNull(col string) Query { return Query{key: col, value: "is.null"} }

// NotNull selects rows whose col is not NULL.
func NotNull(col string) Query { return Query{key: col, value: "not.is.null"} }

// Direction is an Order's.
type Direction bool

// The directions of an Order.
const (
	Asc  Direction = false
	Desc Direction = true
)

// Order sorts by col; several Orders sort by each in turn.
func Order(col string, dir Direction) Query {
	if dir == Desc {
		col += ".desc"
	}
	return Query{key: "order", value: col}
}

// Limit returns at most n rows.
func Limit(n int) Query { return Query{key: "limit", value: fmt.Sprint(n)} }

// FromDatabase reads the database alone, without the buffered writes.
func FromDatabase() Query { return Query{key: "consistency", value: "database"} }

// List returns the rows of table that q selects, buffered writes merged
// in.
func (c *Client) List(ctx context.Context, table string, q ...Query) ([]Row, error) {
	v := url.Values{}
	var order []string
	for _, x := range q {
		if x.err != nil {
			return nil, x.err
		}
		if x.key == "order" {
			order = append(order, x.value)
			continue
		}
		v.Add(x.key, x.value)
	}
	if len(order) > 0 {
		v.Set("order", strings.Join(order, ","))
	}
	var out struct {
		Rows []Row `json:"rows"`
	}
	err := c.call(ctx, http.MethodGet, "/v1/tables/"+url.PathEscape(table), v, nil, &out)
	return out.Rows, err
}

// Get returns the row of table with key id, merged with its buffered
// changes (ErrNotFound if it does not exist, or not yet in the database
// with FromDatabase).
func (c *Client) Get(ctx context.Context, table, id string, q ...Query) (Row, error) {
	v := url.Values{}
	for _, x := range q {
		if x.key == "consistency" {
			v.Set(x.key, x.value)
		}
	}
	var row Row
	err := c.call(ctx, http.MethodGet, rowPath(table, id), v, nil, &row)
	return row, err
}

// Status is a transaction's state and its times.
type Status struct {
	TransactionID string    `json:"transaction_id"`
	State         State     `json:"state"`
	Principal     string    `json:"principal,omitempty"`
	QueuedAt      time.Time `json:"queued_at,omitzero"`
	AppliedAt     time.Time `json:"applied_at,omitzero"`
	ReplicatedAt  time.Time `json:"replicated_at,omitzero"`
	FailedAt      time.Time `json:"failed_at,omitzero"`
	// Error and Code are the database's, for a failed one.
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// reached reports whether s is at want or past it; failed reaches every
// state.
func (s State) reached(want State) bool {
	order := map[State]int{Queued: 0, Applied: 1, Replicated: 2}
	if s == Failed {
		return true
	}
	return order[s] >= order[want] && want != Failed
}

// Status returns the state of transaction txID.
func (c *Client) Status(ctx context.Context, txID string) (Status, error) {
	var st Status
	err := c.call(ctx, http.MethodGet, "/v1/transactions/"+url.PathEscape(txID), nil, nil, &st)
	return st, err
}

// waitChunk bounds one waiting request: spool allows up to a minute, and
// a shorter one stays under proxies' idle timeouts.
const waitChunk = 20 * time.Second

// Wait returns once transaction txID reaches state (Applied: the
// database has it; Replicated: the read replicas too), asking again until
// ctx ends. A transaction that failed instead returns its status and a
// *FailedError (errors.Is ErrFailed), unless state is Failed.
func (c *Client) Wait(ctx context.Context, txID string, state State) (Status, error) {
	for {
		chunk := waitChunk
		if dl, ok := ctx.Deadline(); ok {
			chunk = min(chunk, time.Until(dl).Truncate(time.Millisecond))
		}
		if chunk <= 0 {
			return Status{}, fmt.Errorf("spool client: wait for %s of %s: %w", state, txID, context.DeadlineExceeded)
		}
		var st Status
		q := url.Values{"wait": {string(state)}, "timeout": {chunk.String()}}
		if err := c.call(ctx, http.MethodGet, "/v1/transactions/"+url.PathEscape(txID), q, nil, &st); err != nil {
			return st, err
		}
		if st.State == Failed && state != Failed {
			return st, &FailedError{Status: st}
		}
		if st.State.reached(state) {
			return st, nil
		}
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("spool client: wait for %s of %s: %w", state, txID, context.Cause(ctx))
		}
	}
}

// Ready returns nil when spool's /readyz is 200 (the applier runs, the
// database answers, the log takes writes), else why not. It is not
// retried.
func (c *Client) Ready(ctx context.Context) error {
	noRetry := *c
	noRetry.maxRetries = 0
	var out struct{ Status, Error string }
	err := noRetry.call(ctx, http.MethodGet, "/readyz", nil, nil, &out)
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusServiceUnavailable {
		return fmt.Errorf("spool is not ready: %s", e.Message)
	}
	return err
}
