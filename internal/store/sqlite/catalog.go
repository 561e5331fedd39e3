package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/spoolgw/spool/internal/schema"
)

// queryer is what reading the catalog needs: the read pool, or the batch's
// transaction when a batch meets a table it does not know.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Catalog reads the tables from sqlite_master and their columns from
// pragma table_info, without sqlite's and spool's internal tables (but with
// spool_kv), and keeps the result for ApplyBatch.
func (s *Store) Catalog(ctx context.Context) (*schema.Catalog, error) {
	return s.loadCatalog(ctx, s.rdb)
}

func (s *Store) loadCatalog(ctx context.Context, q queryer) (*schema.Catalog, error) {
	names, err := tableNames(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	tables := make([]*schema.Table, 0, len(names))
	for _, name := range names {
		t, err := readTable(ctx, q, name)
		if err != nil {
			return nil, fmt.Errorf("read catalog: table %q: %w", name, err)
		}
		tables = append(tables, t)
	}
	cat := schema.NewCatalog(tables)
	s.cat.Store(cat)
	return cat, nil
}

func tableNames(ctx context.Context, q queryer) ([]string, error) {
	rows, err := q.QueryContext(ctx, `select name from sqlite_master where type = 'table' order by name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		if strings.HasPrefix(strings.ToLower(name), "sqlite_") || slices.Contains(internalTables, name) {
			continue
		}
		names = append(names, name)
	}
	return names, rows.Err()
}

func readTable(ctx context.Context, q queryer, name string) (*schema.Table, error) {
	rows, err := q.QueryContext(ctx,
		`select name, type, "notnull", dflt_value, pk from pragma_table_info(?) order by cid`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		cols []*schema.Column
		pks  []string
		pkAt []int
	)
	for rows.Next() {
		var (
			c    schema.Column
			dflt sql.NullString
			pk   int
		)
		if err := rows.Scan(&c.Name, &c.Type, &c.NotNull, &dflt, &pk); err != nil {
			return nil, err
		}
		c.Kind = schema.KindOfDeclared(c.Type)
		if c.Kind == schema.Array {
			c.Elem = schema.KindOfDeclared(elemType(c.Type))
		}
		c.Default = dflt.String
		if pk > 0 {
			pks = append(pks, c.Name)
			pkAt = append(pkAt, pk)
		}
		cols = append(cols, &c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Key columns in primary key order, not column order.
	key := make([]string, len(pks))
	for i, at := range pkAt {
		if at < 1 || at > len(key) {
			return nil, fmt.Errorf("primary key position %d out of range", at)
		}
		key[at-1] = pks[i]
	}
	return schema.NewTable(name, cols, key), nil
}

// elemType is the element type of an array type: "int[]" → "int",
// PostgreSQL's "_int4" → "int4".
func elemType(decl string) string {
	d := strings.TrimSpace(decl)
	if e, ok := strings.CutSuffix(d, "[]"); ok {
		return e
	}
	return strings.TrimPrefix(d, "_")
}

// table returns the table from the cached catalog, reading the catalog again
// through q when the table, or one of the named columns, is not in it (the
// operator may have changed the schema since).
func (s *Store) table(ctx context.Context, q queryer, name string, values map[string]any) (*schema.Table, error) {
	if cat := s.cat.Load(); cat != nil {
		if t, err := cat.Table(name); err == nil && hasColumns(t, values) {
			return t, nil
		}
	}
	cat, err := s.loadCatalog(ctx, q)
	if err != nil {
		return nil, err
	}
	return cat.Table(name)
}

func hasColumns(t *schema.Table, values map[string]any) bool {
	for name := range values {
		if t.Column(name) == nil {
			return false
		}
	}
	return true
}
