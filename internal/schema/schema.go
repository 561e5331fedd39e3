// Package schema models the database catalog spool exposes and checks values
// against it. Both stores build a Catalog from their database's own catalog;
// the api checks and normalises every value here before a write is
// acknowledged, so the log only ever holds values the column can take.
package schema

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Kind is the family of a column's type, which decides what JSON values it
// takes and how values compare.
type Kind int

// The column kinds. Each has one canonical Go form (see Column.Normalize).
const (
	Text      Kind = iota // string
	Integer               // int64
	Real                  // float64
	Numeric               // json.Number (exact decimal text)
	Boolean               // bool
	UUID                  // string, canonical lower-case form
	Timestamp             // string, UTC, fixed width (TimeFormat)
	JSON                  // json.RawMessage
	Bytes                 // []byte (base64 in JSON)
	Array                 // []any of the element kind's canonical form
)

var kindNames = [...]string{"text", "integer", "real", "numeric", "boolean", "uuid", "timestamp", "json", "bytes", "array"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Column is one column of a table as the catalog describes it.
type Column struct {
	Name string `json:"name"`
	// Type is the type as the database declares it.
	Type string `json:"type"`
	Kind Kind   `json:"-"`
	// Elem is the element kind of an Array column.
	Elem    Kind `json:"-"`
	NotNull bool `json:"not_null"`
	// Default is the default expression as the database reports it, "" if none.
	Default    string `json:"default,omitempty"`
	PrimaryKey bool   `json:"primary_key"`
}

// HasDefault reports whether the database fills the column when a row omits it.
func (c *Column) HasDefault() bool { return c.Default != "" }

// Table is one table: its columns in catalog order and its primary key.
type Table struct {
	Name    string    `json:"name"`
	Columns []*Column `json:"columns"`
	// Key is the single-column primary key; nil if the table has none or a
	// composite one, in which case it is readable but not writable.
	Key *Column `json:"-"`

	byName map[string]*Column
}

// NewTable builds a table from its columns; key names the primary key
// columns in order.
func NewTable(name string, cols []*Column, key []string) *Table {
	t := &Table{Name: name, Columns: cols, byName: make(map[string]*Column, len(cols))}
	for _, c := range cols {
		t.byName[c.Name] = c
		c.PrimaryKey = slices.Contains(key, c.Name)
	}
	if len(key) == 1 {
		t.Key = t.byName[key[0]]
	}
	return t
}

// Column returns the named column, or nil.
func (t *Table) Column(name string) *Column { return t.byName[name] }

// GeneratesKey reports whether spool generates the key of an insert that
// omits it: true for a single-column uuid or text key.
func (t *Table) GeneratesKey() bool {
	return t.Key != nil && (t.Key.Kind == UUID || t.Key.Kind == Text)
}

// Writable returns nil if spool can write the table, or why not.
func (t *Table) Writable() error {
	if t.Key == nil {
		return fmt.Errorf("table %q has no single-column primary key; spool can read it but not write it", t.Name)
	}
	return nil
}

// Catalog is the set of tables spool exposes.
type Catalog struct {
	tables map[string]*Table
}

// NewCatalog builds a catalog of the given tables.
func NewCatalog(tables []*Table) *Catalog {
	c := &Catalog{tables: make(map[string]*Table, len(tables))}
	for _, t := range tables {
		c.tables[t.Name] = t
	}
	return c
}

// ErrUnknownTable is returned for a table the catalog does not expose.
var ErrUnknownTable = errors.New("unknown table")

// Table returns the named table or an error wrapping ErrUnknownTable.
func (c *Catalog) Table(name string) (*Table, error) {
	if t, ok := c.tables[name]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownTable, name)
}

// Names lists the tables in name order.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.tables))
	for n := range c.tables {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Restrict returns a catalog holding only the named tables, or an error
// naming the first table that does not exist.
func (c *Catalog) Restrict(names []string) (*Catalog, error) {
	var tables []*Table
	for _, n := range names {
		t, err := c.Table(n)
		if err != nil {
			return nil, err
		}
		tables = append(tables, t)
	}
	return NewCatalog(tables), nil
}

// Without returns a catalog without the named tables.
func (c *Catalog) Without(names ...string) *Catalog {
	var tables []*Table
	for n, t := range c.tables {
		if !slices.Contains(names, n) {
			tables = append(tables, t)
		}
	}
	return NewCatalog(tables)
}

// KindOfDeclared maps a declared SQL type to its kind the way SQLite's type
// affinity rules do, extended with the names PostgreSQL uses. It is shared
// by both stores so that one column type means one thing everywhere.
func KindOfDeclared(decl string) Kind {
	d := strings.ToUpper(strings.TrimSpace(decl))
	switch {
	case d == "":
		return Text
	case strings.HasSuffix(d, "[]") || strings.HasPrefix(d, "_"):
		return Array
	case strings.Contains(d, "UUID"):
		return UUID
	case strings.Contains(d, "BOOL"):
		return Boolean
	case strings.Contains(d, "TIMESTAMP"), strings.Contains(d, "DATETIME"), d == "DATE":
		return Timestamp
	case strings.Contains(d, "JSON"):
		return JSON
	case strings.Contains(d, "INT"), d == "SERIAL", d == "BIGSERIAL":
		return Integer
	case strings.Contains(d, "CHAR"), strings.Contains(d, "CLOB"), strings.Contains(d, "TEXT"):
		return Text
	case strings.Contains(d, "BLOB"), d == "BYTEA":
		return Bytes
	case strings.Contains(d, "REAL"), strings.Contains(d, "FLOA"), strings.Contains(d, "DOUB"):
		return Real
	case strings.Contains(d, "NUMERIC"), strings.Contains(d, "DECIMAL"):
		return Numeric
	}
	return Text
}
