package txn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/spoolgw/spool/internal/jsonval"
)

// Decode decodes one transaction as the logs store it: its JSON, as
// encoding/json marshals a Transaction. Numbers among the values
// decode as json.Number, so integers beyond 2^53 keep every digit; objects
// as map[string]any, arrays as []any. A null leaves its field zero, and
// fields it does not know are skipped, as encoding/json does.
//
// It reads the JSON token by token (jsontext) into the fields it names,
// without reflection: the applier decodes every transaction it drains,
// and encoding/json took twice the time.
func Decode(data []byte) (*Transaction, error) {
	// The logs hold what encoding/json wrote: no object repeats a name, so
	// the decoder need not remember each object's names to check.
	// A bytes.Buffer, the decoder reads in place.
	d := decoder{jsontext.NewDecoder(bytes.NewBuffer(data), jsontext.AllowDuplicateNames(true))}
	tx := new(Transaction)
	if err := d.object("transaction", func(name []byte) error { return d.txField(tx, name) }); err != nil {
		return nil, fmt.Errorf("decode transaction: %w", err)
	}
	return tx, nil
}

// decoder reads a transaction's JSON.
type decoder struct{ dec *jsontext.Decoder }

func (d *decoder) txField(tx *Transaction, name []byte) (err error) {
	switch string(name) {
	case "id":
		tx.ID, err = d.str("id")
	case "operations":
		if d.dec.PeekKind() == '[' {
			tx.Operations = []Operation{}
		}
		err = d.array("operations", func() error {
			tx.Operations = append(tx.Operations, Operation{})
			op := &tx.Operations[len(tx.Operations)-1]
			return d.object("operation", func(name []byte) error { return d.opField(op, name) })
		})
	case "created_at":
		var s string
		if s, err = d.str("created_at"); err == nil && s != "" {
			if tx.CreatedAt, err = time.Parse(time.RFC3339Nano, s); err != nil {
				err = fmt.Errorf("created_at: %w", err)
			}
		}
	case "retry_of":
		tx.RetryOf, err = d.str("retry_of")
	case "principal":
		tx.Principal, err = d.str("principal")
	case "idempotency":
		if d.dec.PeekKind() == 'n' {
			return d.dec.SkipValue()
		}
		idem := new(Idempotency)
		tx.Idempotency = idem
		err = d.object("idempotency", func(name []byte) (err error) {
			switch string(name) {
			case "key":
				idem.Key, err = d.str("idempotency key")
			case "record":
				var v jsontext.Value
				if v, err = d.dec.ReadValue(); err == nil {
					idem.Record = json.RawMessage(bytes.Clone(v))
				}
			default:
				err = d.dec.SkipValue()
			}
			return err
		})
	default:
		err = d.dec.SkipValue()
	}
	return err
}

func (d *decoder) opField(op *Operation, name []byte) (err error) {
	switch string(name) {
	case "op":
		var s string
		s, err = d.str("op")
		op.Op = Kind(s)
	case "table":
		op.Table, err = d.str("table")
	case "id":
		op.ID, err = d.str("operation id")
	case "values":
		switch k := d.dec.PeekKind(); k {
		case 'n':
			err = d.dec.SkipValue()
		case '{':
			var v any
			if v, err = jsonval.Read(d.dec); err == nil {
				op.Values = v.(map[string]any)
			}
		default:
			err = fmt.Errorf("values: %s, want an object", kindName(k))
		}
	case "as":
		op.As, err = d.str("as")
	case "generated":
		var tok jsontext.Token
		if tok, err = d.dec.ReadToken(); err == nil {
			switch tok.Kind() {
			case 't', 'f':
				op.Generated = tok.Bool()
			case 'n':
			default:
				err = fmt.Errorf("generated: %s, want true or false", kindName(tok.Kind()))
			}
		}
	default:
		err = d.dec.SkipValue()
	}
	return err
}

// object reads an object (or null), calling field for each of its names
// with the decoder at the name's value.
func (d *decoder) object(what string, field func(name []byte) error) error {
	if ok, err := d.open(what, '{'); !ok {
		return err
	}
	for d.dec.PeekKind() != '}' {
		// The name as its raw JSON, quotes and all: the names of a
		// transaction's fields have nothing to unescape, and a name
		// read this way costs no allocation.
		name, err := d.dec.ReadValue()
		if err != nil {
			return err
		}
		if err := field(name[1 : len(name)-1]); err != nil {
			return err
		}
	}
	_, err := d.dec.ReadToken()
	return err
}

// array reads an array (or null), calling elem for each element.
func (d *decoder) array(what string, elem func() error) error {
	if ok, err := d.open(what, '['); !ok {
		return err
	}
	for d.dec.PeekKind() != ']' {
		if err := elem(); err != nil {
			return err
		}
	}
	_, err := d.dec.ReadToken()
	return err
}

// open reads the start of an object ('{') or an array ('['): ok is false
// for a null (err nil) and for anything else (err says what came).
func (d *decoder) open(what string, want jsontext.Kind) (ok bool, err error) {
	tok, err := d.dec.ReadToken()
	switch {
	case err != nil:
		return false, err
	case tok.Kind() == want:
		return true, nil
	case tok.Kind() == 'n':
		return false, nil
	}
	return false, fmt.Errorf("%s: %s, want %s", what, kindName(tok.Kind()), kindName(want))
}

// str reads a string (or null, as "").
func (d *decoder) str(what string) (string, error) {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return "", err
	}
	switch tok.Kind() {
	case '"':
		return tok.String(), nil
	case 'n':
		return "", nil
	}
	return "", fmt.Errorf("%s: %s, want a string", what, kindName(tok.Kind()))
}

// kindName names a kind of JSON value for an error.
func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "nothing"
}
