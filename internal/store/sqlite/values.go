package sqlite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/spoolgw/spool/internal/schema"
)

// bind turns a canonical value into what SQLite stores: booleans as 1/0,
// JSON and numeric values as text, arrays as JSON text, timestamps as their
// canonical text, bytes as a blob.
func bind(v any) (any, error) {
	switch x := v.(type) {
	case nil, int64, float64, string, []byte:
		return x, nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case int:
		return int64(x), nil
	case json.RawMessage:
		return string(x), nil
	case json.Number:
		return string(x), nil
	case []any:
		b, err := json.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("encode array: %w", err)
		}
		return string(b), nil
	}
	return nil, fmt.Errorf("cannot store a value of type %T", v)
}

// decode turns what SQLite returns for a column into the column kind's
// canonical form, so that a row read back equals the values written. It is
// lenient with what others may have stored (CURRENT_TIMESTAMP text, unix
// seconds, text in a numeric column): a value it cannot convert is returned
// as SQLite gave it.
func decode(c *schema.Column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch c.Kind {
	case schema.Integer:
		switch x := v.(type) {
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
				return int64(x), nil
			}
		case string:
			if i, err := strconv.ParseInt(x, 10, 64); err == nil {
				return i, nil
			}
		}
	case schema.Real:
		switch x := v.(type) {
		case int64:
			return float64(x), nil
		case string:
			if f, err := strconv.ParseFloat(x, 64); err == nil {
				return f, nil
			}
		}
	case schema.Numeric:
		switch x := v.(type) {
		case int64:
			return json.Number(strconv.FormatInt(x, 10)), nil
		case float64:
			return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), nil
		case string:
			return normalizeOr(c, json.Number(x), v), nil
		}
	case schema.Boolean:
		switch x := v.(type) {
		case int64:
			return x != 0, nil
		case float64:
			return x != 0, nil
		case string:
			if b, err := strconv.ParseBool(x); err == nil {
				return b, nil
			}
		}
	case schema.Text, schema.UUID:
		switch x := v.(type) {
		case []byte:
			return string(x), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			return strconv.FormatFloat(x, 'g', -1, 64), nil
		}
	case schema.Timestamp:
		switch x := v.(type) {
		case time.Time: // the driver parses columns declared DATE, DATETIME, TIMESTAMP
			return x.UTC().Format(schema.TimeFormat), nil
		case string:
			if t, err := schema.ParseTime(x); err == nil {
				return t.Format(schema.TimeFormat), nil
			}
		case int64:
			return time.Unix(x, 0).UTC().Format(schema.TimeFormat), nil
		}
	case schema.JSON:
		var raw []byte
		switch x := v.(type) {
		case string:
			raw = []byte(x)
		case []byte:
			raw = x
		default: // a number SQLite stored as such is valid JSON too
			return normalizeOr(c, v, v), nil
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err == nil {
			return json.RawMessage(buf.Bytes()), nil
		}
	case schema.Bytes:
		if s, ok := v.(string); ok {
			return []byte(s), nil
		}
	case schema.Array:
		if s, ok := v.(string); ok {
			d := json.NewDecoder(bytes.NewReader([]byte(s)))
			d.UseNumber()
			var items []any
			if err := d.Decode(&items); err != nil {
				return nil, fmt.Errorf("column %q: decode array: %w", c.Name, err)
			}
			return normalizeOr(c, items, v), nil
		}
	}
	return v, nil
}

// normalizeOr returns v normalised for c, or fallback if it does not fit.
func normalizeOr(c *schema.Column, v, fallback any) any {
	if n, err := c.Normalize(v); err == nil {
		return n
	}
	return fallback
}
