package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The dead-letter queue and spool's figures: every call needs the admin
// scope.

// DeadLetter is a transaction the database refused for good.
type DeadLetter struct {
	Transaction struct {
		ID         string      `json:"id"`
		Operations []Operation `json:"operations"`
		CreatedAt  time.Time   `json:"created_at"`
		RetryOf    string      `json:"retry_of,omitempty"`
		Principal  string      `json:"principal,omitempty"`
	} `json:"transaction"`
	// Error and Code are the database's.
	Error         string    `json:"error"`
	Code          string    `json:"code,omitempty"`
	Attempts      int       `json:"attempts"`
	FirstFailedAt time.Time `json:"first_failed_at"`
	LastFailedAt  time.Time `json:"last_failed_at"`
	RetriedAs     string    `json:"retried_as,omitempty"`
	RetriedBy     string    `json:"retried_by,omitempty"`
	DroppedAt     time.Time `json:"dropped_at,omitzero"`
	DroppedBy     string    `json:"dropped_by,omitempty"`
}

// DeadLetterFilter selects dead letters; zero fields select all.
type DeadLetterFilter struct {
	Table string
	// Code selects error codes starting with it (a SQLSTATE class such as
	// "23", or "SQLITE_CONSTRAINT").
	Code  string
	Since time.Time
	// Limit is the page size (spool's default when 0); After the id of
	// the last dead letter of the page before (DeadLetterPage.After).
	Limit int
	After string
	// All lists retried and dropped ones too.
	All bool
}

// DeadLetterPage is one page of dead letters, oldest first.
type DeadLetterPage struct {
	DeadLetters []DeadLetter
	// After is the filter's After for the next page; "" on the last.
	After string
}

// DeadLetters lists a page of dead letters.
func (c *Client) DeadLetters(ctx context.Context, f DeadLetterFilter) (DeadLetterPage, error) {
	v := url.Values{}
	for k, s := range map[string]string{"table": f.Table, "code": f.Code, "after": f.After} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !f.Since.IsZero() {
		v.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.All {
		v.Set("all", "true")
	}
	var out struct {
		DeadLetters []DeadLetter `json:"dead_letters"`
		Next        string       `json:"next"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/dlq", v, nil, &out); err != nil {
		return DeadLetterPage{}, err
	}
	p := DeadLetterPage{DeadLetters: out.DeadLetters}
	if out.Next != "" {
		if n, err := url.Parse(out.Next); err == nil {
			p.After = n.Query().Get("after")
		}
	}
	return p, nil
}

// DeadLetter returns the dead letter of transaction id.
func (c *Client) DeadLetter(ctx context.Context, id string) (DeadLetter, error) {
	var dl DeadLetter
	err := c.call(ctx, http.MethodGet, "/v1/dlq/"+url.PathEscape(id), nil, nil, &dl)
	return dl, err
}

// RetryReceipt is the answer to a retry: the new transaction.
type RetryReceipt struct {
	RetryOf       string   `json:"retry_of"`
	TransactionID string   `json:"transaction_id"`
	State         State    `json:"state"`
	IDs           []string `json:"ids"`
	By            string   `json:"by"`
}

// Retry sends dead letter id back to the end of the log as a new
// transaction of the caller (ErrConflict if it was retried or dropped).
func (c *Client) Retry(ctx context.Context, id string) (RetryReceipt, error) {
	var rc RetryReceipt
	err := c.call(ctx, http.MethodPost, "/v1/dlq/"+url.PathEscape(id)+"/retry", nil, nil, &rc)
	return rc, err
}

// RetryEdited retries dead letter id with ops in place of its operations.
func (c *Client) RetryEdited(ctx context.Context, id string, ops ...Operation) (RetryReceipt, error) {
	var rc RetryReceipt
	err := c.call(ctx, http.MethodPost, "/v1/dlq/"+url.PathEscape(id)+"/retry", nil, map[string]any{"operations": ops}, &rc)
	return rc, err
}

// Drop drops dead letter id; spool keeps who dropped it and when.
func (c *Client) Drop(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/dlq/"+url.PathEscape(id), nil, nil, nil)
}

// Stats are spool's figures (GET /v1/stats), of the process asked.
type Stats struct {
	Log struct {
		Depth int64 `json:"depth"`
		Bytes int64 `json:"bytes"`
	} `json:"log"`
	Overlay struct {
		Transactions int `json:"transactions"`
		Rows         int `json:"rows"`
		Operations   int `json:"operations"`
		Spilled      int `json:"spilled_operations"`
	} `json:"overlay"`
	// Accepted, Applied and Failed count transactions since the process
	// started (the JSON's queued, processed and failed).
	Accepted int64 `json:"queued"`
	Applied  int64 `json:"processed"`
	Failed   int64 `json:"failed"`
	// AppliedPerSecond is over the last 10 s.
	AppliedPerSecond float64 `json:"processing_rate"`
	UptimeSeconds    float64 `json:"uptime_seconds"`
	// AckToApplied is the acknowledgement → applied latency of the
	// transactions this process applied in the last minute (Samples 0:
	// none).
	AckToApplied *struct {
		P50     float64 `json:"p50_seconds"`
		P99     float64 `json:"p99_seconds"`
		Samples int     `json:"samples"`
	} `json:"ack_to_applied,omitempty"`
	// Applier is nil in a process that runs none (--role api).
	Applier *struct {
		Running    bool `json:"running"`
		HoldsLease bool `json:"holds_lease"`
		Backoff    struct {
			Attempt   int       `json:"attempt"`
			LastError string    `json:"last_error,omitempty"`
			NextRetry time.Time `json:"next_retry,omitzero"`
		} `json:"backoff"`
	} `json:"applier,omitempty"`
	// Replication is nil without read replicas.
	Replication *struct {
		Replicas []struct {
			Name     string `json:"name"`
			Up       bool   `json:"up"`
			LagBytes int64  `json:"lag_bytes"`
			Error    string `json:"error,omitempty"`
		} `json:"replicas"`
		Waiting    int     `json:"waiting"`
		LagSeconds float64 `json:"lag_seconds"`
	} `json:"replication,omitempty"`
	// Telemetry are the telemetry lanes, if any.
	Telemetry []Lane `json:"telemetry,omitempty"`
}

// Lane is a telemetry lane's figures.
type Lane struct {
	Table       string  `json:"table"`
	CurrentSize int     `json:"current_size"`
	MaxSize     int     `json:"max_size"`
	Utilization float64 `json:"utilization_pct"`
	TotalAdded  uint64  `json:"total_added"`
	RowsDropped uint64  `json:"rows_dropped"`
	Writer      struct {
		State        string `json:"state"`
		RowsWritten  uint64 `json:"rows_written"`
		RowsRejected uint64 `json:"rows_rejected"`
	} `json:"writer"`
}

// Stats returns the figures of the spool process asked.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := c.call(ctx, http.MethodGet, "/v1/stats", nil, nil, &s)
	return s, err
}
