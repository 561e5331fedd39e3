package schema

import (
	"encoding/json"
	"strings"
	"time"
)

// DefaultValue evaluates the column's default when it is a literal (a
// number, a quoted string, true/false, null) or the current time, and
// returns it in canonical form. ok is false for defaults only the database
// can evaluate.
func (c *Column) DefaultValue(now time.Time) (v any, ok bool) {
	d := strings.TrimSpace(c.Default)
	// PostgreSQL reports defaults with casts: 'x'::text, 0::bigint.
	if i := strings.LastIndex(d, "::"); i > 0 && !strings.Contains(d[i:], "'") {
		d = d[:i]
	}
	for strings.HasPrefix(d, "(") && strings.HasSuffix(d, ")") {
		d = strings.TrimSpace(d[1 : len(d)-1])
	}
	var raw any
	switch u := strings.ToUpper(d); {
	case d == "":
		return nil, false
	case u == "NULL":
		return nil, true
	case u == "TRUE":
		raw = true
	case u == "FALSE":
		raw = false
	case u == "CURRENT_TIMESTAMP" || u == "NOW()" || u == "LOCALTIMESTAMP" || u == "TRANSACTION_TIMESTAMP()" || u == "STATEMENT_TIMESTAMP()" || u == "CLOCK_TIMESTAMP()":
		if c.Kind != Timestamp {
			return nil, false
		}
		raw = now
	case len(d) >= 2 && d[0] == '\'' && d[len(d)-1] == '\'':
		raw = strings.ReplaceAll(d[1:len(d)-1], "''", "'")
	default:
		var n json.Number
		if err := json.Unmarshal([]byte(d), &n); err != nil {
			return nil, false
		}
		raw = n
	}
	if c.Kind == Boolean {
		if n, isNum := raw.(json.Number); isNum { // SQLite writes booleans as 0/1
			raw = n != "0"
		}
	}
	norm, err := c.Normalize(raw)
	if err != nil {
		return nil, false
	}
	return norm, true
}
