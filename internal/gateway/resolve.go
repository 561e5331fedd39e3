package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// Limits on one transaction.
const (
	// MaxOperations bounds a transaction: a batch of thousands of rows
	// belongs on the telemetry lane or in several transactions.
	MaxOperations = 1000
	// MaxAliasLength bounds an "as" alias.
	MaxAliasLength = 128
)

// Request is the body of POST /v1/transactions.
type Request struct {
	Operations []OpRequest `json:"operations"`
	// Principal is who sends it (auth.Principal.String), set by the
	// server, never by the body; the transaction records it.
	Principal string `json:"-"`
	// Key is the client's Idempotency-Key, "" if none; Fingerprint
	// identifies the request it came with (its route and content), so
	// that a repeat of the key with another request is refused.
	Key         string `json:"-"`
	Fingerprint string `json:"-"`
}

// OpRequest is one operation as a client sends it.
type OpRequest struct {
	Op     string          `json:"op"`
	Table  string          `json:"table"`
	ID     json.RawMessage `json:"id,omitempty"`
	Values map[string]any  `json:"values,omitempty"`
	As     string          `json:"as,omitempty"`
}

// Receipt is what the writer is told of its accepted transaction.
type Receipt struct {
	TransactionID string            `json:"transaction_id"`
	State         txn.State         `json:"state"`
	IDs           []string          `json:"ids"`
	Refs          map[string]string `json:"refs"`
}

// alias is an earlier operation's row that {"$ref": name} resolves to.
type alias struct {
	table string
	id    string
}

// resolve checks a request against the catalog and turns it into a
// transaction: keys generated or normalised, $refs replaced by ids, values
// normalised, literal defaults of inserted rows filled in.
func resolve(cat *schema.Catalog, req *Request, now time.Time) (*txn.Transaction, *Receipt, error) {
	if len(req.Operations) == 0 {
		return nil, nil, &txn.InputError{Kind: txn.ErrInvalid, Op: -1, Msg: "operations: a transaction needs at least one operation"}
	}
	if len(req.Operations) > MaxOperations {
		return nil, nil, &txn.InputError{Kind: txn.ErrInvalid, Op: -1, Msg: fmt.Sprintf("operations: %d operations; at most %d in one transaction", len(req.Operations), MaxOperations)}
	}
	tx := &txn.Transaction{ID: txn.NewID(), CreatedAt: now, Principal: req.Principal, Operations: make([]txn.Operation, 0, len(req.Operations))}
	aliases := map[string]alias{}
	for i, o := range req.Operations {
		op, err := resolveOp(cat, i, o, aliases, now)
		if err != nil {
			return nil, nil, err
		}
		if o.As != "" {
			if len(o.As) > MaxAliasLength || strings.HasPrefix(o.As, "$") {
				return nil, nil, txn.BadOp(i, "alias %q must be at most %d characters and not start with $", o.As, MaxAliasLength)
			}
			if _, dup := aliases[o.As]; dup {
				return nil, nil, txn.BadOp(i, "alias %q is already used by an earlier operation", o.As)
			}
			aliases[o.As] = alias{table: op.Table, id: op.ID}
		}
		tx.Operations = append(tx.Operations, op)
	}
	return tx, ReceiptFor(tx), nil
}

func resolveOp(cat *schema.Catalog, i int, o OpRequest, aliases map[string]alias, now time.Time) (txn.Operation, error) {
	kind := txn.Kind(o.Op)
	if !kind.Valid() {
		return txn.Operation{}, txn.BadOp(i, "unknown op %q (want insert, update, upsert or delete)", o.Op)
	}
	t, err := cat.Table(o.Table)
	if err != nil {
		return txn.Operation{}, txn.BadOp(i, "%v", err)
	}
	if err := t.Writable(); err != nil {
		return txn.Operation{}, txn.BadOp(i, "%v", err)
	}
	values := o.Values
	if values == nil {
		values = map[string]any{}
	}
	for name, v := range values {
		if r, ok, err := refOf(v); err != nil {
			return txn.Operation{}, txn.BadOp(i, "column %q: %v", name, err)
		} else if ok {
			a, found := aliases[r]
			if !found {
				return txn.Operation{}, txn.BadOp(i, "column %q: unknown $ref %q (no earlier operation has \"as\": %q)", name, r, r)
			}
			values[name] = a.id
		}
	}
	id, err := resolveID(t, i, o.ID, aliases)
	if err != nil {
		return txn.Operation{}, err
	}
	key := t.Key.Name
	generated := false
	switch kind {
	case txn.Insert, txn.Upsert:
		if v, ok := values[key]; ok && v != nil {
			n, err := t.Key.Normalize(v)
			if err != nil {
				return txn.Operation{}, txn.BadOp(i, "primary key %q %v", key, err)
			}
			if id != "" && schema.KeyText(n) != id {
				return txn.Operation{}, txn.BadOp(i, "id %q and values.%s %q disagree", id, key, schema.KeyText(n))
			}
			id = schema.KeyText(n)
		}
		if id == "" {
			if !t.GeneratesKey() || kind == txn.Upsert {
				return txn.Operation{}, txn.BadOp(i, "table %q has a %s primary key %q that spool cannot generate; name it in the %s", t.Name, t.Key.Kind, key, kind)
			}
			id, generated = txn.NewID(), true
		}
		values[key] = t.Key.KeyValue(id)
		if kind == txn.Insert {
			fillDefaults(t, values, now)
		}
	case txn.Update, txn.Delete:
		if id == "" {
			return txn.Operation{}, txn.BadOp(i, "%s needs the id of the row", kind)
		}
		if kind == txn.Delete && len(values) > 0 {
			return txn.Operation{}, txn.BadOp(i, "delete takes no values")
		}
		if kind == txn.Update && len(values) == 0 {
			return txn.Operation{}, txn.BadOp(i, "update needs values to set")
		}
		if v, ok := values[key]; ok {
			if n, err := t.Key.Normalize(v); err != nil || schema.KeyText(n) != id {
				return txn.Operation{}, txn.BadOp(i, "update cannot change the primary key %q", key)
			}
		}
	}
	if err := t.CheckValues(values, kind == txn.Insert); err != nil {
		return txn.Operation{}, txn.BadOp(i, "%v", err)
	}
	if len(values) == 0 {
		values = nil
	}
	return txn.Operation{Op: kind, Table: t.Name, ID: id, Values: values, As: o.As, Generated: generated}, nil
}

// resolveID reads an operation's "id": a string, a number, or a $ref.
func resolveID(t *schema.Table, i int, raw json.RawMessage, aliases map[string]alias) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", txn.BadOp(i, "id: %v", err)
	}
	if r, ok, err := refOf(v); err != nil {
		return "", txn.BadOp(i, "id: %v", err)
	} else if ok {
		a, found := aliases[r]
		if !found {
			return "", txn.BadOp(i, "id: unknown $ref %q (no earlier operation has \"as\": %q)", r, r)
		}
		if a.table != t.Name {
			return "", txn.BadOp(i, "id: $ref %q is a row of table %q, not %q", r, a.table, t.Name)
		}
		return a.id, nil
	}
	var text string
	switch x := v.(type) {
	case string:
		text = x
	case json.Number:
		text = string(x)
	default:
		return "", txn.BadOp(i, "id must be a string, a number or {\"$ref\": alias}")
	}
	key, err := t.Key.NormalizeKey(text)
	if err != nil {
		return "", txn.BadOp(i, "id %s", err)
	}
	return key, nil
}

// refOf reports whether v is {"$ref": "alias"}.
func refOf(v any) (string, bool, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return "", false, nil
	}
	r, has := m["$ref"]
	if !has {
		return "", false, nil
	}
	s, isString := r.(string)
	if len(m) != 1 || !isString {
		return "", false, fmt.Errorf(`a reference must be {"$ref": "alias"} alone`)
	}
	return s, true, nil
}

// fillDefaults gives an inserted row the literal defaults of the columns it
// omits, so the overlay shows the row as the database will hold it. Defaults
// spool cannot evaluate are left to the database.
func fillDefaults(t *schema.Table, values map[string]any, now time.Time) {
	for _, c := range t.Columns {
		if _, ok := values[c.Name]; ok || !c.HasDefault() {
			continue
		}
		if v, ok := c.DefaultValue(now); ok {
			values[c.Name] = v
		}
	}
}
