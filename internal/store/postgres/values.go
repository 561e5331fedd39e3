package postgres

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/spoolgw/spool/internal/schema"
)

// bind turns a canonical value into a bind parameter: its PostgreSQL text
// form, which pgx sends in the text format for PostgreSQL to parse as the
// parameter's type (bytes as bytea's hex form, arrays as array literals).
// Every parameter is a string or nil, so encoding one can never fail on the
// client, whatever the column's type (a domain, an enum).
func bind(kind, elem schema.Kind, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if kind == schema.Bytes {
		if _, ok := v.([]byte); !ok {
			return nil, fmt.Errorf("cannot bind %T as bytes", v)
		}
	}
	if kind == schema.Array {
		items, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("cannot bind %T as an array", v)
		}
		return arrayLiteral(elem, items)
	}
	return text(v)
}

// text is the PostgreSQL text form of a canonical scalar value.
func text(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int:
		return strconv.Itoa(x), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		if x {
			return "true", nil
		}
		return "false", nil
	case json.Number:
		return string(x), nil
	case json.RawMessage:
		return string(x), nil
	case []byte:
		return `\x` + hex.EncodeToString(x), nil
	}
	return "", fmt.Errorf("cannot bind a value of type %T", v)
}

// arrayLiteral writes items as a one-dimensional array literal, every
// element quoted, so PostgreSQL parses each with the element type's input.
func arrayLiteral(elem schema.Kind, items []any) (string, error) {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, it := range items {
		if i > 0 {
			sb.WriteByte(',')
		}
		if it == nil {
			sb.WriteString("NULL")
			continue
		}
		if elem == schema.Bytes {
			if _, ok := it.([]byte); !ok {
				return "", fmt.Errorf("element %d: cannot bind %T as bytes", i, it)
			}
		}
		s, err := text(it)
		if err != nil {
			return "", fmt.Errorf("element %d: %w", i, err)
		}
		quoteElem(&sb, s)
	}
	sb.WriteByte('}')
	return sb.String(), nil
}

// textArray is the array literal of bound values (text or nil).
func textArray(items []any) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, it := range items {
		if i > 0 {
			sb.WriteByte(',')
		}
		s, ok := it.(string)
		if !ok {
			sb.WriteString("NULL")
			continue
		}
		quoteElem(&sb, s)
	}
	sb.WriteByte('}')
	return sb.String()
}

// quoteElem writes s as a quoted array element.
func quoteElem(sb *strings.Builder, s string) {
	sb.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			sb.WriteByte('\\')
		}
		sb.WriteByte(s[i])
	}
	sb.WriteByte('"')
}

// selectExpr is how a column is selected for decode: bytea as is, arrays as
// text[], everything else as text.
func selectExpr(c *schema.Column) string {
	switch c.Kind {
	case schema.Bytes:
		return ident(c.Name)
	case schema.Array:
		return ident(c.Name) + "::text[]"
	}
	return ident(c.Name) + "::text"
}

// scanDest returns a destination for a column selected by selectExpr.
func scanDest(c *schema.Column) any {
	switch c.Kind {
	case schema.Bytes:
		return new([]byte)
	case schema.Array:
		return new(pgtype.Array[pgtype.Text])
	}
	return new(pgtype.Text)
}

// decodeDest turns a scanned destination into the column kind's canonical
// form. A value it cannot convert (a timestamp of infinity, a numeric NaN)
// is returned as PostgreSQL's text.
func decodeDest(c *schema.Column, dest any) any {
	switch d := dest.(type) {
	case *[]byte:
		if *d == nil {
			return nil
		}
		return *d
	case *pgtype.Array[pgtype.Text]:
		if !d.Valid {
			return nil
		}
		return decodeArray(c.Elem, d.Elements, d.Dims)
	case *pgtype.Text:
		if !d.Valid {
			return nil
		}
		return decodeText(c.Kind, d.String)
	}
	return nil
}

// decodeArray builds the (possibly nested) array of canonical elements.
func decodeArray(elem schema.Kind, items []pgtype.Text, dims []pgtype.ArrayDimension) []any {
	if len(dims) > 1 {
		n := 1
		for _, d := range dims[1:] {
			n *= int(d.Length)
		}
		out := make([]any, 0, dims[0].Length)
		for i := 0; i+n <= len(items) && n > 0; i += n {
			out = append(out, decodeArray(elem, items[i:i+n], dims[1:]))
		}
		return out
	}
	out := make([]any, len(items))
	for i, it := range items {
		if it.Valid {
			if elem == schema.Bytes {
				out[i] = decodeByteaText(it.String)
			} else {
				out[i] = decodeText(elem, it.String)
			}
		}
	}
	return out
}

// decodeText turns PostgreSQL's text output of a value of kind into its
// canonical form.
func decodeText(kind schema.Kind, s string) any {
	switch kind {
	case schema.Integer:
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i
		}
	case schema.Real:
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	case schema.Numeric:
		return json.Number(s)
	case schema.Boolean:
		switch s {
		case "true", "t":
			return true
		case "false", "f":
			return false
		}
	case schema.Timestamp:
		if t, ok := parseTime(s); ok {
			return t.Format(schema.TimeFormat)
		}
	case schema.JSON:
		var buf bytes.Buffer
		if err := json.Compact(&buf, []byte(s)); err == nil {
			return json.RawMessage(buf.Bytes())
		}
	case schema.Bytes:
		return decodeByteaText(s)
	}
	return s
}

// decodeByteaText decodes bytea's hex text form (\x0102); anything else is
// returned as text.
func decodeByteaText(s string) any {
	if h, ok := strings.CutPrefix(s, `\x`); ok {
		if b, err := hex.DecodeString(h); err == nil {
			return b
		}
	}
	return s
}

// pgTimeLayouts are PostgreSQL's ISO output forms: timestamptz in a UTC
// session ("2024-05-06 07:08:09.123456+00"), timestamp, date.
var pgTimeLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07:00:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

func parseTime(s string) (time.Time, bool) {
	for _, l := range pgTimeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
