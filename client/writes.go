package client

import (
	"context"
	"net/http"
	"net/url"
)

// Values are a row's column values. Inside a Transaction a value may be
// Ref(alias): the key of the row an earlier operation named alias.
type Values map[string]any

// State is where a transaction is on its way to the read replicas.
type State string

// The states, in order; Failed ends the way instead.
const (
	Queued     State = "queued"
	Applied    State = "applied"
	Replicated State = "replicated"
	Failed     State = "failed"
)

// Receipt is spool's answer to an accepted transaction: it is in the
// log, durable, and will apply exactly once.
type Receipt struct {
	TransactionID string `json:"transaction_id"`
	State         State  `json:"state"`
	// IDs are the row keys of the operations, in order.
	IDs []string `json:"ids"`
	// Refs are the keys of the aliased rows, by alias.
	Refs map[string]string `json:"refs"`
}

// RowReceipt is the answer to a write of one row.
type RowReceipt struct {
	ID            string `json:"id"`
	TransactionID string `json:"transaction_id"`
	State         State  `json:"state"`
}

// Operation is one operation of a transaction; make it with InsertOp,
// UpdateOp, UpsertOp or DeleteOp.
type Operation struct {
	Op     string `json:"op"`
	Table  string `json:"table"`
	ID     any    `json:"id,omitempty"`
	Values Values `json:"values,omitempty"`
	As     string `json:"as,omitempty"`
}

// InsertOp inserts a row; a single-column uuid or text key left out is
// generated.
func InsertOp(table string, values Values) Operation {
	return Operation{Op: "insert", Table: table, Values: values}
}

// UpdateOp updates the row of key id (a key, or Ref(alias)).
func UpdateOp(table string, id any, values Values) Operation {
	return Operation{Op: "update", Table: table, ID: id, Values: values}
}

// UpsertOp inserts a row, or updates the one with its key.
func UpsertOp(table string, values Values) Operation {
	return Operation{Op: "upsert", Table: table, Values: values}
}

// DeleteOp deletes the row of key id (a key, or Ref(alias)).
func DeleteOp(table string, id any) Operation {
	return Operation{Op: "delete", Table: table, ID: id}
}

// Alias names the operation's row alias, for Ref in later operations.
func (o Operation) Alias(alias string) Operation { o.As = alias; return o }

// Ref is the key of the row an earlier operation of the same transaction
// named alias: a value, or an UpdateOp's or DeleteOp's id.
func Ref(alias string) any { return map[string]string{"$ref": alias} }

// Transaction submits ops as one atomic transaction.
func (c *Client) Transaction(ctx context.Context, ops ...Operation) (Receipt, error) {
	var rc Receipt
	err := c.call(ctx, http.MethodPost, "/v1/transactions", nil, map[string]any{"operations": ops}, &rc)
	return rc, err
}

// Insert inserts one row of table.
func (c *Client) Insert(ctx context.Context, table string, values Values) (RowReceipt, error) {
	var rc RowReceipt
	if values == nil {
		values = Values{}
	}
	err := c.call(ctx, http.MethodPost, "/v1/tables/"+url.PathEscape(table), nil, values, &rc)
	return rc, err
}

// Update updates the row of table with key id (ErrNotFound if it is
// neither buffered nor in the database).
func (c *Client) Update(ctx context.Context, table, id string, values Values) (RowReceipt, error) {
	var rc RowReceipt
	if values == nil {
		values = Values{}
	}
	err := c.call(ctx, http.MethodPatch, rowPath(table, id), nil, values, &rc)
	return rc, err
}

// Delete deletes the row of table with key id (ErrNotFound likewise).
func (c *Client) Delete(ctx context.Context, table, id string) (RowReceipt, error) {
	var rc RowReceipt
	err := c.call(ctx, http.MethodDelete, rowPath(table, id), nil, nil, &rc)
	return rc, err
}

// Upsert inserts a row of table, or updates the one with its key.
func (c *Client) Upsert(ctx context.Context, table string, values Values) (RowReceipt, error) {
	rc, err := c.Transaction(ctx, UpsertOp(table, values))
	if err != nil {
		return RowReceipt{}, err
	}
	return RowReceipt{ID: rc.IDs[0], TransactionID: rc.TransactionID, State: rc.State}, nil
}

func rowPath(table, id string) string {
	return "/v1/tables/" + url.PathEscape(table) + "/" + url.PathEscape(id)
}
