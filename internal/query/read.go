package query

import (
	"context"
	"errors"
	"fmt"
	"maps"
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

// ErrDatabase marks a read that failed because the database did not
// answer (down, unreachable, locked for too long).
var ErrDatabase = errors.New("the database did not answer")

// ErrOverlay marks a read that failed because the overlay of buffered
// writes could not be read (a Redis log that is down or restarting).
var ErrOverlay = errors.New("the buffered writes could not be read")

// Database is what a smart read needs of a store.
type Database interface {
	Get(ctx context.Context, t *schema.Table, key string) (schema.Row, bool, error)
	Query(ctx context.Context, q *Query, limit int) ([]schema.Row, error)
}

// Overlay is what a smart read needs of the overlay.
type Overlay interface {
	Row(ctx context.Context, table, key string) (overlay.Pending, error)
	Rows(ctx context.Context, table string, keys []string) ([]overlay.Pending, error)
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
			return nil, "", false, fmt.Errorf("read overlay %s/%s: %w: %w", t.Name, key, ErrOverlay, err)
		}
	}
	if pending.Decides() {
		// An insert or delete is pending: the database row cannot change
		// what readers see, so it is not read (the database may be down).
		row, exists := pending.Apply(nil)
		return Complete(t, row), FromOverlay, exists, nil
	}
	base, found, err := r.DB.Get(ctx, t, key)
	if err != nil {
		return nil, "", false, fmt.Errorf("read %s/%s: %w: %w", t.Name, key, ErrDatabase, err)
	}
	if len(pending) == 0 {
		return Complete(t, base), FromDatabase, found, nil
	}
	row, exists := pending.Apply(base)
	src := FromOverlay
	if found {
		src = FromMerged
	}
	return Complete(t, row), src, exists, nil
}

// GetMany reads rows by canonical key text (keys with no repeats), as Get
// does, with one read of the overlay for all of them and one of the
// database per MaxInItems keys whose pending changes do not decide them:
// rows[i] is keys[i]'s row, nil if there is none. With merge false it
// reads the database alone.
func (r *Reader) GetMany(ctx context.Context, t *schema.Table, keys []string, merge bool) ([]schema.Row, error) {
	pending := make(map[string]overlay.Pending, len(keys))
	if merge {
		// The overlay first, as Get does.
		ps, err := r.Overlay.Rows(ctx, t.Name, keys)
		if err != nil {
			return nil, fmt.Errorf("read overlay %s: %w: %w", t.Name, ErrOverlay, err)
		}
		for i, k := range keys {
			pending[k] = ps[i]
		}
	} else {
		for _, k := range keys {
			pending[k] = nil
		}
	}
	base, err := r.bases(ctx, t, pending)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.Name, err)
	}
	rows := make([]schema.Row, len(keys))
	for i, k := range keys {
		row, exists := base[k], base[k] != nil
		if p := pending[k]; len(p) > 0 {
			row, exists = p.Apply(row)
		}
		if exists {
			rows[i] = Complete(t, row)
		}
	}
	return rows, nil
}

// List reads the rows matching q. With merge false it reads the database
// alone.
func (r *Reader) List(ctx context.Context, q *Query, merge bool) ([]schema.Row, Source, error) {
	rows, _, src, err := r.ListMarked(ctx, q, merge)
	return rows, src, err
}

// ListMarked is List telling, row by row, which rows have changes still
// buffered (buffered[i] for rows[i]): a dashboard marks them.
func (r *Reader) ListMarked(ctx context.Context, q *Query, merge bool) (rows []schema.Row, buffered []bool, src Source, err error) {
	var pending map[string]overlay.Pending
	if merge {
		var err error
		if pending, err = r.Overlay.Table(ctx, q.Table.Name); err != nil {
			return nil, nil, "", fmt.Errorf("read overlay %s: %w: %w", q.Table.Name, ErrOverlay, err)
		}
	}
	dbRows, err := r.page(ctx, q, pending)
	if err != nil {
		return nil, nil, "", fmt.Errorf("list %s: %w: %w", q.Table.Name, ErrDatabase, err)
	}
	if len(pending) == 0 {
		for i, row := range dbRows {
			dbRows[i] = Complete(q.Table, row)
		}
		dbRows = dbRows[:min(len(dbRows), q.Limit)]
		return dbRows, make([]bool, len(dbRows)), FromDatabase, nil
	}
	key := q.Table.Key.Name
	// Candidates are merged rows that match; a row of a lone pending
	// insert is its insert's values, shared with the overlay until it
	// makes the page (most of a backlog does not), then copied.
	cands := make([]candidate, 0, min(len(dbRows)+len(pending), 4*q.Limit))
	for _, row := range dbRows {
		k := schema.KeyText(row[key])
		p, ok := pending[k]
		if !ok {
			cands = append(cands, candidate{row: row})
			continue
		}
		delete(pending, k)
		if merged, exists := p.Apply(row); exists && q.Match(merged) {
			cands = append(cands, candidate{row: merged, buffered: true})
		}
	}
	// Rows the overlay changes but the database page did not hold may
	// exist in the database without matching the filter there; read the
	// ones whose pending changes start from a database row, in one query.
	bases, err := r.bases(ctx, q.Table, pending)
	if err != nil {
		return nil, nil, "", fmt.Errorf("list %s: %w", q.Table.Name, err)
	}
	for k, p := range pending {
		if len(p) == 1 && p[0].Kind == txn.Insert {
			if q.Match(p[0].Values) {
				cands = append(cands, candidate{row: p[0].Values, shared: true, buffered: true})
			}
			continue
		}
		if merged, exists := p.Apply(bases[k]); exists && q.Match(merged) {
			cands = append(cands, candidate{row: merged, buffered: true})
		}
	}
	cands = least(cands, q.Limit, func(a, b candidate) int { return q.Less(a.row, b.row) })
	rows, buffered = make([]schema.Row, len(cands)), make([]bool, len(cands))
	fromDB, fromOverlay := false, false
	for i, c := range cands {
		row := c.row
		if c.shared {
			row = maps.Clone(row)
		}
		rows[i], buffered[i] = Complete(q.Table, row), c.buffered
		fromOverlay = fromOverlay || c.buffered
		fromDB = fromDB || !c.buffered
	}
	src = FromDatabase
	switch {
	case fromOverlay && fromDB:
		src = FromMerged
	case fromOverlay:
		src = FromOverlay
	}
	return rows, buffered, src, nil
}

// candidate is a row that may make a list's page: a database row, or one
// the overlay changes (buffered). Shared rows belong to the overlay and
// are copied before they are returned.
type candidate struct {
	row              schema.Row
	shared, buffered bool
}

// least returns the k least of cs by cmp, in order. Where k is small
// beside len(cs) (a page of a large backlog) it keeps the k least seen so
// far, sorted, and most rows cost one comparison; else it sorts them all.
func least[T any](cs []T, k int, cmp func(a, b T) int) []T {
	if k <= 0 {
		return cs[:0]
	}
	if len(cs) <= 8*k {
		slices.SortFunc(cs, cmp)
		return cs[:min(len(cs), k)]
	}
	best := make([]T, 0, k+1)
	for _, c := range cs {
		if len(best) == k && cmp(c, best[k-1]) >= 0 {
			continue
		}
		i, _ := slices.BinarySearchFunc(best, c, cmp)
		for i < len(best) && cmp(best[i], c) == 0 {
			i++ // after its equals, as a stable sort would put it
		}
		best = slices.Insert(best, i, c)
		if len(best) > k {
			best = best[:k]
		}
	}
	return best
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

// Complete gives a row every column of its table, null where it has none
// (an overlay row lacks the columns its writes did not name).
func Complete(t *schema.Table, row schema.Row) schema.Row {
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
// rows whose pending changes decide them alone (see overlay.Pending.Decides).
func (r *Reader) bases(ctx context.Context, t *schema.Table, pending map[string]overlay.Pending) (map[string]schema.Row, error) {
	var keys []any
	for k, p := range pending {
		if !p.Decides() {
			keys = append(keys, t.Key.KeyValue(k))
		}
	}
	out := make(map[string]schema.Row, len(keys))
	for chunk := range slices.Chunk(keys, MaxInItems) {
		q := &Query{Table: t, Conds: []Cond{{Column: t.Key, Op: In, Values: chunk}}, Order: []Order{{Column: t.Key}}, Limit: len(chunk)}
		rows, err := r.DB.Query(ctx, q, len(chunk))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDatabase, err)
		}
		for _, row := range rows {
			out[schema.KeyText(row[t.Key.Name])] = row
		}
	}
	return out, nil
}
