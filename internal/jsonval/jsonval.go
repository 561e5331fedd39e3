// Package jsonval reads JSON values as encoding/json decodes them into an
// any with UseNumber (objects as map[string]any, arrays as []any, numbers
// as json.Number, so integers beyond 2^53 keep every digit), from a
// jsontext.Decoder: token by token, without encoding/json's reflection.
package jsonval

import (
	"encoding/json"

	"github.com/go-json-experiment/json/jsontext"
)

// Read reads the next JSON value from dec.
func Read(dec *jsontext.Decoder) (any, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		m := make(map[string]any)
		for dec.PeekKind() != '}' {
			name, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			key := name.String() // before the next read voids name
			if m[key], err = Read(dec); err != nil {
				return nil, err
			}
		}
		_, err = dec.ReadToken()
		return m, err
	case '[':
		a := []any{}
		for dec.PeekKind() != ']' {
			v, err := Read(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err = dec.ReadToken()
		return a, err
	case '"':
		return tok.String(), nil
	case '0':
		return json.Number(tok.String()), nil
	case 't', 'f':
		return tok.Bool(), nil
	}
	return nil, nil // null
}
