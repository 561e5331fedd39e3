package events

import (
	"encoding/json"
	"maps"
	"sync"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// The types of message a subscriber gets.
const (
	// TypeSnapshot comes first: the rows the list route returns for the
	// subscription's filters, taken after the subscription's position.
	TypeSnapshot = "snapshot"
	// TypeRow is a change to a row: the row as a read returns it then
	// (null once deleted, or withdrawn with its failed transaction).
	TypeRow = "row"
	// TypeTransaction is a followed transaction's new state.
	TypeTransaction = "transaction"
	// TypeReset says the cursor given cannot be resumed from; a new
	// snapshot follows.
	TypeReset = "reset"
	// TypeClose ends a subscription, saying why, with the cursor to resume
	// from.
	TypeClose = "close"
)

// Message is one row or transaction message, shared by every subscriber
// it goes to: its JSON is encoded once.
type Message struct {
	Type   string
	Cursor Cursor
	// A row message's.
	Table string
	ID    string
	Op    txn.Kind
	Row   schema.Row // nil: the row is not there (deleted, withdrawn)
	// ReadErr is why the row could not be read, if it could not.
	ReadErr string
	// prev is the row before the change, as the hub last read it, if
	// prevKnown: what tells a subscriber's filter the row left it.
	prev      schema.Row
	prevKnown bool
	// unresolved is set on a row message whose row the hub did not make:
	// nobody followed its table when it was made. A subscriber that
	// resumes from before it has its row made then (Hub.resolve: read,
	// or completed from its operation's values if decided), under the
	// hub's lock, before it is filtered or encoded.
	unresolved bool
	// decided is set on a row message whose row its operation decides
	// (decided): Row holds the operation's values, shared with its
	// transaction, until complete makes the row of them.
	decided bool
	// Both kinds'.
	TxID  string
	State txn.State
	// A transaction message's.
	LSN  txn.LSN
	Err  string
	Code string

	once sync.Once
	data []byte
}

// complete makes a decided row message's row: a copy of its operation's
// values with every other column of t null, as the smart read returns it.
func (m *Message) complete(t *schema.Table) {
	if m.Row != nil {
		m.Row = query.Complete(t, maps.Clone(m.Row))
	}
}

// rowJSON and txJSON are the messages as clients get them.
type rowJSON struct {
	Type   string     `json:"type"`
	Cursor string     `json:"cursor"`
	Table  string     `json:"table"`
	ID     string     `json:"id"`
	Op     txn.Kind   `json:"op"`
	Row    schema.Row `json:"row"`
	TxID   string     `json:"transaction_id"`
	State  txn.State  `json:"state"`
	Error  string     `json:"error,omitempty"`
}

type txJSON struct {
	Type   string    `json:"type"`
	Cursor string    `json:"cursor"`
	TxID   string    `json:"transaction_id"`
	State  txn.State `json:"state"`
	LSN    string    `json:"lsn,omitempty"`
	Error  string    `json:"error,omitempty"`
	Code   string    `json:"code,omitempty"`
}

// JSON returns the message as clients get it, with its type and cursor.
func (m *Message) JSON() []byte {
	m.once.Do(func() {
		var v any
		if m.Type == TypeRow {
			v = rowJSON{Type: m.Type, Cursor: m.Cursor.String(), Table: m.Table, ID: m.ID, Op: m.Op, Row: m.Row,
				TxID: m.TxID, State: m.State, Error: m.ReadErr}
		} else {
			t := txJSON{Type: m.Type, Cursor: m.Cursor.String(), TxID: m.TxID, State: m.State, Error: m.Err, Code: m.Code}
			if m.LSN != 0 {
				t.LSN = m.LSN.String()
			}
			v = t
		}
		var err error
		if m.data, err = json.Marshal(v); err != nil {
			// A row holds only what JSON encodes (canonical values).
			m.data, _ = json.Marshal(map[string]string{"type": m.Type, "cursor": m.Cursor.String(), "error": "encode: " + err.Error()})
		}
	})
	return m.data
}

// SnapshotJSON is a snapshot message: the rows of table at cursor.
func SnapshotJSON(table string, rows []schema.Row, cursor Cursor) ([]byte, error) {
	if rows == nil {
		rows = []schema.Row{}
	}
	return json.Marshal(struct {
		Type   string       `json:"type"`
		Cursor string       `json:"cursor"`
		Table  string       `json:"table,omitempty"`
		Rows   []schema.Row `json:"rows"`
	}{TypeSnapshot, cursor.String(), table, rows})
}

// ControlJSON is a reset or close message: its reason, and the cursor to
// resume from.
func ControlJSON(typ, reason string, cursor Cursor) []byte {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Cursor string `json:"cursor"`
		Reason string `json:"reason"`
	}{typ, cursor.String(), reason})
	return b
}
