package history

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// outcome is how a request or read ended.
type outcome int

const (
	outcomePending outcome = iota // invoked, never completed; checked as unknown
	outcomeOK                     // acknowledged (2xx), or a read that answered
	outcomeFailed                 // refused for good (4xx), never applied
	outcomeUnknown                // transport error, timeout or 5xx: may have been applied
)

func (o outcome) String() string {
	switch o {
	case outcomeOK:
		return "ok"
	case outcomeFailed:
		return "failed"
	case outcomeUnknown:
		return "unknown"
	}
	return "pending"
}

// History records the operations of a workload's clients. Its methods and
// those of the handles it gives out are safe for concurrent use.
type History struct {
	start time.Time

	mu       sync.Mutex
	clients  map[string]*Client
	requests []*request // in invocation order
	reads    []*read    // in invocation order
	statuses []status   // in recording order
}

// New returns an empty history whose clock starts now; messages give times
// as offsets from it.
func New() *History {
	return &History{start: time.Now(), clients: make(map[string]*Client)}
}

// Client returns the recorder of the client called name, creating it on
// first use; the same name gives the same client.
func (h *History) Client(name string) *Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, found := h.clients[name]
	if !found {
		c = &Client{h: h, name: name}
		h.clients[name] = c
	}
	return c
}

// Client records the operations of one client: the writer that owns its
// rows, its reads and its status reads.
type Client struct {
	h     *History
	name  string
	nreqs int // requests invoked so far; guarded by h.mu
}

// Name returns the client's name.
func (c *Client) Name() string { return c.name }

// request is one recorded client request: a transaction of row writes.
type request struct {
	client    string
	seq       int // the client's request number, from 1
	writes    []Write
	invoked   time.Time
	completed time.Time
	outcome   outcome
	txID      string
	err       string
}

// label names the request in messages: its transaction id when it has
// one, else its number among its client's requests.
func (r *request) label() string {
	if r.txID != "" {
		return fmt.Sprintf("txn %s", r.txID)
	}
	return fmt.Sprintf("request #%d", r.seq)
}

// Invoke records that the client is sending a request carrying writes, and
// returns the handle on which the request's outcome is recorded. Every
// write names its row: the harness chooses row ids.
func (c *Client) Invoke(writes ...Write) *Request {
	r := &request{client: c.name, writes: slices.Clone(writes)}
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	c.nreqs++
	r.seq = c.nreqs
	r.invoked = time.Now()
	h.requests = append(h.requests, r)
	return &Request{h: h, r: r}
}

// Request is the handle of an invoked request. Exactly one of OK, Failed or
// Unknown records how it ended; a second call panics, as it is a bug in
// the harness. A request never completed is checked as Unknown.
type Request struct {
	h *History
	r *request
}

// OK records that the request was acknowledged (2xx) as transaction txID.
func (q *Request) OK(txID string) { q.complete(outcomeOK, txID, nil) }

// Failed records that the request was refused for good (4xx): it must never
// be applied.
func (q *Request) Failed(err error) { q.complete(outcomeFailed, "", err) }

// Unknown records that the request's fate is unknown (a transport error, a
// timeout or a 5xx): it may be applied once, or not at all.
func (q *Request) Unknown(err error) { q.complete(outcomeUnknown, "", err) }

func (q *Request) complete(o outcome, txID string, err error) {
	q.h.mu.Lock()
	defer q.h.mu.Unlock()
	if q.r.outcome != outcomePending {
		panic(fmt.Sprintf("history: %s of client %s completed twice", q.r.label(), q.r.client))
	}
	q.r.completed = time.Now()
	q.r.outcome = o
	q.r.txID = txID
	if err != nil {
		q.r.err = err.Error()
	}
}

// read is one recorded row read.
type read struct {
	client    string
	row       string
	api       string // the api process that served it
	invoked   time.Time
	completed time.Time
	outcome   outcome // pending, OK (observed) or unknown
	present   bool
	counter   int64
	err       string
}

// observed describes what the read saw.
func (r *read) observed() string {
	if !r.present {
		return "no row"
	}
	return fmt.Sprintf("counter %d", r.counter)
}

// InvokeRead records that the client is reading row through the api process
// named api, and returns the handle on which the answer is recorded.
func (c *Client) InvokeRead(row, api string) *Read {
	r := &read{client: c.name, row: row, api: api}
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	r.invoked = time.Now()
	h.reads = append(h.reads, r)
	return &Read{h: h, r: r}
}

// Read is the handle of an invoked read. Exactly one of Observed or Unknown
// records how it ended; a second call panics.
type Read struct {
	h *History
	r *read
}

// Observed records the read's answer: the row's counter if present, or that
// the row is absent.
func (d *Read) Observed(counter int64, present bool) {
	d.complete(outcomeOK, counter, present, nil)
}

// Unknown records that the read got no answer; the checker ignores it.
func (d *Read) Unknown(err error) { d.complete(outcomeUnknown, 0, false, err) }

func (d *Read) complete(o outcome, counter int64, present bool, err error) {
	d.h.mu.Lock()
	defer d.h.mu.Unlock()
	if d.r.outcome != outcomePending {
		panic(fmt.Sprintf("history: read of row %s by client %s completed twice", d.r.row, d.r.client))
	}
	d.r.completed = time.Now()
	d.r.outcome = o
	d.r.present = present
	if present {
		d.r.counter = counter
	}
	if err != nil {
		d.r.err = err.Error()
	}
}

// status is one recorded transaction status read.
type status struct {
	client string
	txID   string
	state  State
	at     time.Time
}

// Status records that the client read the state of its acknowledged
// transaction txID and observed s. A client records its status reads in
// the order it made them; the checker holds each transaction's states to
// that order.
func (c *Client) Status(txID string, s State) {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statuses = append(h.statuses, status{client: c.name, txID: txID, state: s, at: time.Now()})
}
