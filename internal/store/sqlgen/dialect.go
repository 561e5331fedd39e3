package sqlgen

import (
	"strconv"
	"strings"
)

// Dialect is the syntax in which the databases' SQL differs: how a
// statement names its parameters, how it quotes an identifier and how it
// says false. Its values are Postgres and SQLite.
type Dialect struct {
	// numbered: parameters are $1, $2, … in the order of the arguments;
	// otherwise each is ?.
	numbered bool
	// stripNUL: an identifier loses its NUL bytes before it is quoted.
	stripNUL bool
	// falseLit is the literal of false.
	falseLit string
}

var (
	// Postgres is PostgreSQL's syntax: numbered parameters ($1) and
	// identifiers quoted as pgx.Identifier quotes them, without the NUL
	// bytes a PostgreSQL name cannot hold.
	Postgres = Dialect{numbered: true, stripNUL: true, falseLit: "false"}
	// SQLite is SQLite's syntax: ? parameters, identifiers quoted as they
	// are, and 0 for false.
	SQLite = Dialect{falseLit: "0"}
)

// Ident quotes an identifier: between double quotes, a double quote in it
// doubled. Every identifier in spool's SQL passes through here, and every
// one comes from the catalog.
func (d Dialect) Ident(name string) string {
	if d.stripNUL {
		name = strings.ReplaceAll(name, "\x00", "")
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// Table quotes the name of a table, qualified with its schema unless
// schema is "".
func (d Dialect) Table(schema, name string) string {
	if schema == "" {
		return d.Ident(name)
	}
	return d.Ident(schema) + "." + d.Ident(name)
}

// Idents quotes names and joins them with commas.
func (d Dialect) Idents(names []string) string {
	var sb strings.Builder
	d.writeIdents(&sb, names)
	return sb.String()
}

func (d Dialect) writeIdents(sb *strings.Builder, names []string) {
	for i, n := range names {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(d.Ident(n))
	}
}

// Placeholder is the placeholder of the n-th parameter (from 1).
func (d Dialect) Placeholder(n int) string {
	if d.numbered {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

func (d Dialect) writePlaceholder(sb *strings.Builder, n int) {
	if d.numbered {
		sb.WriteByte('$')
		sb.WriteString(strconv.Itoa(n))
		return
	}
	sb.WriteByte('?')
}

// params collects the parameters of a statement as its text is written,
// and names each by its placeholder.
type params struct {
	d    Dialect
	args []any
}

// add appends v to the parameters and returns its placeholder.
func (p *params) add(v any) string {
	p.args = append(p.args, v)
	return p.d.Placeholder(len(p.args))
}
