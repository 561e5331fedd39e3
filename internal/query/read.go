package query

import (
	"context"
	"fmt"
	"slices"

	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// Source says where the rows of a read came from.
type Source string

// The sources a read reports (the X-Spool-Source header).
const (
	FromDatabase Source = "database"
	FromOverlay  Source = "overlay"
	FromMerged   Source = "merged"
)

// Database is what a smart read needs of a store.
type Database interface {
	Get(ctx context.Context, t *schema.Table, key string) (schema.Row, bool, error)
	Query(ctx context.Context, q *Query, limit int) ([]schema.Row, error)
}

// Overlay is what a smart read needs of the overlay.
type Overlay interface {
	Row(ctx context.Context, table, key string) (overlay.Pending, error)
	Table(ctx context.Context, table string) (map[string]overlay.Pending, error)
}

// Reader runs smart reads: database rows merged with the overlay.
type Reader struct {
	DB      Database
	Overlay Overlay
}

// Get reads one row by key text. With merge false it reads the database
// alone (consistency=database).
func (r *Reader) Get(ctx context.Context, t *schema.Table, key string, merge bool) (schema.Row, Source, bool, error) {
	var pending overlay.Pending
	if merge {
		// The overlay first: a transaction evicted between the two reads
		// is in the database by then, so the row cannot fall between.
		var err error
		if pending, err = r.Overlay.Row(ctx, t.Name, key); err != nil {
			return nil, "", false, fmt.Errorf("read overlay %s/%s: %w", t.Name, key, err)
		}
	}
	base, found, err := r.DB.Get(ctx, t, key)
	if err != nil {
		return nil, "", false, fmt.Errorf("read %s/%s: %w", t.Name, key, err)
	}
	if len(pending) == 0 {
		return complete(t, base), FromDatabase, found, nil
	}
	row, exists := pending.Apply(base)
	src := FromOverlay
	if found {
		src = FromMerged
	}
	return complete(t, row), src, exists, nil
}

// List reads the rows matching q. With merge false it reads the database
// alone.
func (r *Reader) List(ctx context.Context, q *Query, merge bool) ([]schema.Row, Source, error) {
	var pending map[string]overlay.Pending
	if merge {
		var err error
		if pending, err = r.Overlay.Table(ctx, q.Table.Name); err != nil {
			return nil, "", fmt.Errorf("read overlay %s: %w", q.Table.Name, err)
		}
	}
	dbRows, err := r.page(ctx, q, pending)
	if err != nil {
		return nil, "", fmt.Errorf("list %s: %w", q.Table.Name, err)
	}
	if len(pending) == 0 {
		for i, row := range dbRows {
			dbRows[i] = complete(q.Table, row)
		}
		return dbRows[:min(len(dbRows), q.Limit)], FromDatabase, nil
	}
	key := q.Table.Key.Name
	rows := make([]schema.Row, 0, len(dbRows)+len(pending))
	touched := make(map[string]bool, len(pending))
	for k := range pending {
		touched[k] = true
	}
	for _, row := range dbRows {
		k := schema.KeyText(row[key])
		p, ok := pending[k]
		if !ok {
			rows = append(rows, row)
			continue
		}
		delete(pending, k)
		if merged, exists := p.Apply(row); exists && q.Match(merged) {
			rows = append(rows, merged)
		}
	}
	// Rows the overlay changes but the database page did not hold may
	// exist in the database without matching the filter there; read the
	// ones whose pending changes start from a database row, in one query.
	bases, err := r.bases(ctx, q.Table, pending)
	if err != nil {
		return nil, "", fmt.Errorf("list %s: %w", q.Table.Name, err)
	}
	for k, p := range pending {
		if merged, exists := p.Apply(bases[k]); exists && q.Match(complete(q.Table, merged)) {
			rows = append(rows, merged)
		}
	}
	slices.SortFunc(rows, q.Less)
	rows = rows[:min(len(rows), q.Limit)]
	fromDB, fromOverlay := false, false
	for i, row := range rows {
		rows[i] = complete(q.Table, row)
		if touched[schema.KeyText(row[key])] {
			fromOverlay = true
		} else {
			fromDB = true
		}
	}
	src := FromDatabase
	switch {
	case fromOverlay && fromDB:
		src = FromMerged
	case fromOverlay:
		src = FromOverlay
	}
	return rows, src, nil
}

// page reads the database's rows for q: enough of them that q.Limit rows
// the overlay does not touch are among them, or all there are. Only those
// decide which database rows make the result; rows the overlay touches
// are merged and judged apart. Pending changes that start with an insert
// seldom touch a database row, so they are not asked for up front: a
// backlog of new rows does not make every list read that many more rows.
// If the page turns out to hold too few untouched rows, it is read again,
// larger.
func (r *Reader) page(ctx context.Context, q *Query, pending map[string]overlay.Pending) ([]schema.Row, error) {
	extra := 0
	for _, p := range pending {
		if p[0].Kind != txn.Insert {
			extra++
		}
	}
	key := q.Table.Key.Name
	for {
		limit := q.Limit + extra
		rows, err := r.DB.Query(ctx, q, limit)
		if err != nil || len(rows) < limit || len(pending) == 0 {
			return rows, err
		}
		touched := 0
		for _, row := range rows {
			if _, ok := pending[schema.KeyText(row[key])]; ok {
				touched++
			}
		}
		if touched <= extra {
			return rows, nil
		}
		extra = touched
	}
}

// complete gives a row every column of its table, null where it has none
// (an overlay row lacks the columns its writes did not name).
func complete(t *schema.Table, row schema.Row) schema.Row {
	if row == nil {
		return nil
	}
	for _, c := range t.Columns {
		if _, ok := row[c.Name]; !ok {
			row[c.Name] = nil
		}
	}
	return row
}

// bases reads the database rows that pending changes apply to, skipping
// rows whose first pending change is an insert (it replaces the row whole).
func (r *Reader) bases(ctx context.Context, t *schema.Table, pending map[string]overlay.Pending) (map[string]schema.Row, error) {
	var keys []any
	for k, p := range pending {
		if p[0].Kind != txn.Insert {
			keys = append(keys, t.Key.KeyValue(k))
		}
	}
	out := make(map[string]schema.Row, len(keys))
	for chunk := range slices.Chunk(keys, MaxInItems) {
		q := &Query{Table: t, Conds: []Cond{{Column: t.Key, Op: In, Values: chunk}}, Order: []Order{{Column: t.Key}}, Limit: len(chunk)}
		rows, err := r.DB.Query(ctx, q, len(chunk))
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			out[schema.KeyText(row[t.Key.Name])] = row
		}
	}
	return out, nil
}
