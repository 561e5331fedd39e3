package sqlgen

import (
	"fmt"

	"github.com/spoolgw/spool/internal/schema"
)

// Builder builds the statements of one store: its dialect's syntax, and
// what the store does with column values, which the databases store and
// compare in their own ways.
type Builder struct {
	Dialect
	// Bind turns a canonical value of column c (see
	// schema.Column.Normalize) into the bind parameter the store sends for
	// it. It is required.
	Bind func(c *schema.Column, v any) (any, error)
	// Select is what a read selects of column c, in a form the store's
	// scan decodes; nil selects the column as it is.
	Select func(c *schema.Column) string
	// Compare is what a filter compares column c by, for equality if eq,
	// and what an order orders it by, its name prefixed with qual ("r.");
	// nil compares the column as it is.
	Compare func(c *schema.Column, qual string, eq bool) string
	// Cast is the type a filter's parameter for column c is cast to; nil,
	// or "", casts none.
	Cast func(c *schema.Column) string
	// BindArray, if set, binds the values of an IN filter on column c as
	// one array parameter, compared with = any(…); without it each value
	// is a parameter of IN (…).
	BindArray func(c *schema.Column, values []any) (any, error)
}

// BindColumn normalises v against column c (values from the log may be
// json.Number or base64 text after a JSON round trip) and binds it.
func (b *Builder) BindColumn(c *schema.Column, v any) (any, error) {
	n, err := c.Normalize(v)
	if err != nil {
		return nil, fmt.Errorf("column %q %w", c.Name, err)
	}
	return b.Bind(c, n)
}

// compared is what filters compare, and orders order, column c by (see
// Compare).
func (b *Builder) compared(c *schema.Column, qual string, eq bool) string {
	if b.Compare != nil {
		return b.Compare(c, qual, eq)
	}
	return qual + b.Ident(c.Name)
}

// selected is what reads select of column c (see Select).
func (b *Builder) selected(c *schema.Column) string {
	if b.Select != nil {
		return b.Select(c)
	}
	return b.Ident(c.Name)
}

// param adds v to p and returns its placeholder, cast to column c's type
// (with suffix, "[]" for an array of them) where the store casts.
func (b *Builder) param(p *params, c *schema.Column, v any, suffix string) string {
	ph := p.add(v)
	if b.Cast == nil {
		return ph
	}
	if typ := b.Cast(c); typ != "" {
		return ph + "::" + typ + suffix
	}
	return ph
}
