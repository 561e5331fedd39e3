package schema

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// TimeFormat is the canonical text of a timestamp: UTC with nanoseconds at a
// fixed width, so that text order is time order in the database and in the
// overlay alike.
const TimeFormat = "2006-01-02T15:04:05.000000000Z"

// timeLayouts are the timestamp forms a client may send.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02"}

// ValueError says why a value does not fit its column.
type ValueError struct {
	Table, Column string
	Problem       string
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("column %q of table %q: %s", e.Column, e.Table, e.Problem)
}

// Row is one row as column name to canonical value.
type Row map[string]any

// Normalize checks v against the column and returns its canonical form.
// It accepts what encoding/json decodes (with UseNumber) and every canonical
// form, so normalising twice changes nothing.
func (c *Column) Normalize(v any) (any, error) {
	if v == nil {
		if c.NotNull {
			return nil, fmt.Errorf("is NOT NULL")
		}
		return nil, nil
	}
	return normalize(c.Kind, c.Elem, v)
}

func normalize(kind, elem Kind, v any) (any, error) {
	switch kind {
	case Text:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, fmt.Errorf("must be a string, not %s", jsonKind(v))
	case UUID:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("must be a UUID string, not %s", jsonKind(v))
		}
		u, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			return nil, fmt.Errorf("must be a UUID, not %q", s)
		}
		return u.String(), nil
	case Integer:
		return toInt(v)
	case Real:
		f, err := toFloat(v)
		if err != nil {
			return nil, err
		}
		return f, nil
	case Numeric:
		return toNumeric(v)
	case Boolean:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fmt.Errorf("must be true or false, not %s", jsonKind(v))
	case Timestamp:
		switch t := v.(type) {
		case time.Time:
			return t.UTC().Format(TimeFormat), nil
		case string:
			ts, err := ParseTime(t)
			if err != nil {
				return nil, err
			}
			return ts.Format(TimeFormat), nil
		}
		return nil, fmt.Errorf("must be an RFC 3339 timestamp string, not %s", jsonKind(v))
	case JSON:
		var raw []byte
		switch j := v.(type) {
		case json.RawMessage:
			raw = j
		case []byte:
			raw = j
		default:
			raw, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("is not valid JSON: %v", err)
			}
			return json.RawMessage(raw), nil // json.Marshal's output is compact
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, fmt.Errorf("is not valid JSON: %v", err)
		}
		return json.RawMessage(buf.Bytes()), nil
	case Bytes:
		switch b := v.(type) {
		case []byte:
			return b, nil
		case string:
			d, err := base64.StdEncoding.DecodeString(b)
			if err != nil {
				return nil, fmt.Errorf("must be base64 text: %v", err)
			}
			return d, nil
		}
		return nil, fmt.Errorf("must be a base64 string, not %s", jsonKind(v))
	case Array:
		items, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("must be an array, not %s", jsonKind(v))
		}
		out := make([]any, len(items))
		for i, it := range items {
			if it == nil {
				continue
			}
			n, err := normalize(elem, Text, it)
			if err != nil {
				return nil, fmt.Errorf("element %d %s", i, err)
			}
			out[i] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("has an unsupported type")
}

// ParseTime parses a timestamp in one of the accepted forms, as UTC.
func ParseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("must be an RFC 3339 timestamp, not %q", s)
}

func toInt(v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case int:
		return int64(n), nil
	case float64:
		if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
			return int64(n), nil
		}
		return 0, fmt.Errorf("must be an integer, not %v", n)
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("must be a 64-bit integer, not %s", n)
		}
		return i, nil
	}
	return 0, fmt.Errorf("must be an integer, not %s", jsonKind(v))
}

func toFloat(v any) (float64, error) {
	switch n := v.(type) {
	case float64:
		return n, nil
	case int64:
		return float64(n), nil
	case int:
		return float64(n), nil
	case json.Number:
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return 0, fmt.Errorf("must be a number, not %s", n)
		}
		return f, nil
	}
	return 0, fmt.Errorf("must be a number, not %s", jsonKind(v))
}

func toNumeric(v any) (json.Number, error) {
	var s string
	switch n := v.(type) {
	case json.Number:
		s = string(n)
	case int64:
		return json.Number(strconv.FormatInt(n, 10)), nil
	case float64:
		return json.Number(strconv.FormatFloat(n, 'g', -1, 64)), nil
	case string:
		s = strings.TrimSpace(n)
	default:
		return "", fmt.Errorf("must be a number, not %s", jsonKind(v))
	}
	// The canonical text is a JSON number (so it round-trips through the
	// log and the spill files unchanged): "1.50" stays, "000" or "+1" are
	// refused.
	if _, ok := new(big.Rat).SetString(s); !ok || !isJSONNumber(s) {
		return "", fmt.Errorf("must be a decimal number, not %q", s)
	}
	return json.Number(s), nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64, int64, int:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// NormalizeKey parses the text form of a key value (as it appears in a URL
// or an operation's id) and returns its canonical text.
func (c *Column) NormalizeKey(s string) (string, error) {
	var v any = s
	if c.Kind == Integer {
		v = json.Number(s)
	}
	n, err := normalize(c.Kind, c.Elem, v)
	if err != nil {
		return "", err
	}
	return KeyText(n), nil
}

// KeyText is the text form of a canonical key value, the form the overlay
// and the log index rows by.
func KeyText(v any) string {
	switch k := v.(type) {
	case string:
		return k
	case int64:
		return strconv.FormatInt(k, 10)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// KeyValue turns the text form of a key back into the canonical value the
// column holds.
func (c *Column) KeyValue(key string) any {
	if c.Kind == Integer {
		i, err := strconv.ParseInt(key, 10, 64)
		if err == nil {
			return i
		}
	}
	return key
}

// CheckValues normalises the values of a write to table t in place.
// insert says whether missing NOT NULL columns without a default are an
// error (they are for inserts, not for updates).
func (t *Table) CheckValues(values map[string]any, insert bool) error {
	for name, v := range values {
		c := t.Column(name)
		if c == nil {
			return &ValueError{Table: t.Name, Column: name, Problem: "no such column"}
		}
		n, err := c.Normalize(v)
		if err != nil {
			return &ValueError{Table: t.Name, Column: name, Problem: err.Error()}
		}
		values[name] = n
	}
	if insert {
		for _, c := range t.Columns {
			if _, ok := values[c.Name]; !ok && c.NotNull && !c.HasDefault() && !c.PrimaryKey {
				return &ValueError{Table: t.Name, Column: c.Name, Problem: "is NOT NULL and has no default; give it a value"}
			}
		}
	}
	return nil
}

// Compare orders two canonical values of one kind: -1, 0 or +1. Null sorts
// first. Values of different Go types compare by their text.
func Compare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	switch x := a.(type) {
	case string: // text, and the canonical text of uuid, numeric, timestamp
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	case int64:
		switch y := b.(type) {
		case int64:
			return cmp3(x < y, x > y)
		case float64:
			return cmp3(float64(x) < y, float64(x) > y)
		}
	case float64:
		switch y := b.(type) {
		case float64:
			return cmp3(x < y, x > y)
		case int64:
			return cmp3(x < float64(y), x > float64(y))
		}
	case bool:
		if y, ok := b.(bool); ok {
			return cmp3(!x && y, x && !y)
		}
	case json.Number:
		if y, ok := b.(json.Number); ok {
			rx, okx := new(big.Rat).SetString(string(x))
			ry, oky := new(big.Rat).SetString(string(y))
			if okx && oky {
				return rx.Cmp(ry)
			}
		}
	case []byte:
		if y, ok := b.([]byte); ok {
			return bytes.Compare(x, y)
		}
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

func cmp3(less, greater bool) int {
	switch {
	case less:
		return -1
	case greater:
		return 1
	}
	return 0
}

func isJSONNumber(s string) bool {
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return false
	}
	var n json.Number
	return json.Unmarshal([]byte(s), &n) == nil
}
