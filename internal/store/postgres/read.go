package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// castType is the type a filter value of column c is cast to: the base type
// of its kind, without a type modifier (a cast to varchar(5) would cut a
// longer value short, and compare it wrong). A timestamp of any kind is
// compared as timestamptz, which the UTC session makes exact for timestamp
// and date columns too.
func castType(c *schema.Column) string {
	switch c.Kind {
	case schema.Integer:
		return "bigint"
	case schema.Real:
		return "double precision"
	case schema.Numeric:
		return "numeric"
	case schema.Boolean:
		return "boolean"
	case schema.UUID:
		return "uuid"
	case schema.Timestamp:
		return "timestamptz"
	case schema.JSON:
		return "jsonb"
	case schema.Bytes:
		return "bytea"
	}
	return "text"
}

// sortExpr is what a column is compared and ordered by. Text is ordered
// byte-wise (collation "C"), as schema.Compare orders it in the overlay;
// a column of a type without a kind of its own (an enum, inet) is compared
// by its text, which is what the overlay holds of it.
func sortExpr(c *schema.Column, qual string) string {
	name := qual + ident(c.Name)
	if c.Kind != schema.Text {
		return name
	}
	if textual(c.Type) {
		return name + ` collate "C"`
	}
	return name + `::text collate "C"`
}

// compareExpr is what a filter compares a column by: eqExpr for equality,
// else sortExpr, which orders it too.
func compareExpr(c *schema.Column, qual string, eq bool) string {
	if eq {
		return eqExpr(c, qual)
	}
	return sortExpr(c, qual)
}

// eqExpr is what a column is compared for equality by: the column itself
// (equality does not depend on the collation, and an index of the column's
// own collation serves it), or its text for a type without a kind.
func eqExpr(c *schema.Column, qual string) string {
	if c.Kind == schema.Text && !textual(c.Type) {
		return qual + ident(c.Name) + "::text"
	}
	return qual + ident(c.Name)
}

// textual reports whether a declared type (format_type's output) is one of
// PostgreSQL's string types.
func textual(typ string) bool {
	return typ == "text" || typ == "name" || typ == "character" ||
		strings.HasPrefix(typ, "character varying") || strings.HasPrefix(typ, "character(")
}

// scan runs a select of every column of t and decodes the rows into
// canonical values. A statement whose result type changed under the
// statement cache (the operator altered a column) is run once more.
func (s *Store) scan(ctx context.Context, t *schema.Table, text string, args []any) ([]schema.Row, error) {
	out, err := s.scanOnce(ctx, t, text, args)
	if sqlState(err) == pgerrcode.FeatureNotSupported {
		out, err = s.scanOnce(ctx, t, text, args)
	}
	if undefinedObject(err) {
		s.stale.Store(true)
	}
	return out, err
}

func (s *Store) scanOnce(ctx context.Context, t *schema.Table, text string, args []any) ([]schema.Row, error) {
	rows, err := s.pool.Query(ctx, text, args...)
	if err != nil {
		return nil, err
	}
	dest := make([]any, len(t.Columns))
	for i, c := range t.Columns {
		dest[i] = scanDest(c)
	}
	return pgx.AppendRows([]schema.Row(nil), rows, func(r pgx.CollectableRow) (schema.Row, error) {
		if err := r.Scan(dest...); err != nil {
			return nil, err
		}
		row := make(schema.Row, len(t.Columns))
		for i, c := range t.Columns {
			row[c.Name] = decodeDest(c, dest[i])
		}
		return row, nil
	})
}

// Applied tells whether transaction id was applied, and when.
func (s *Store) Applied(ctx context.Context, id string) (time.Time, bool, error) {
	if !txn.ValidID(id) {
		return time.Time{}, false, nil // spool_applied holds only UUIDs
	}
	var at time.Time
	err := s.pool.QueryRow(ctx, `select applied_at from spool_applied where txn_id = $1`, id).Scan(&at)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return time.Time{}, false, nil
	case err != nil:
		return time.Time{}, false, fmt.Errorf("look up applied %s: %w", id, err)
	}
	return at.UTC(), true, nil
}

// RecordLogHead records when the oldest transaction log holds was made,
// and returns the earliest such time of any log (see store.Store).
func (s *Store) RecordLogHead(ctx context.Context, log string, oldest time.Time) (time.Time, error) {
	var earliest time.Time
	err := s.pool.QueryRow(ctx, `with recorded as (
			insert into spool_log_heads (log, oldest) values ($1, $2)
			on conflict (log) do update set oldest = excluded.oldest, recorded_at = now()
			returning oldest)
		select least((select oldest from recorded), (select min(oldest) from spool_log_heads where log <> $1))`,
		log, oldest).Scan(&earliest)
	if err != nil {
		return time.Time{}, fmt.Errorf("record the head of log %s: %w", log, err)
	}
	return earliest.UTC(), nil
}

// PruneApplied deletes the records of at most limit transactions applied
// before appliedBefore with ids below idBefore (see store.Store); the
// primary key's order finds them.
func (s *Store) PruneApplied(ctx context.Context, appliedBefore time.Time, idBefore string, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `delete from spool_applied where txn_id in (
		select txn_id from spool_applied where txn_id < $1::uuid and applied_at < $2 order by txn_id limit $3)`,
		idBefore, appliedBefore, limit)
	if err != nil {
		return 0, fmt.Errorf("prune spool_applied: %w", err)
	}
	return tag.RowsAffected(), nil
}

// deadLetterColumns are the columns scanDeadLetter reads, in its order.
const deadLetterColumns = `tx::text, error, code, failed_at, attempts, coalesce(first_failed_at, failed_at),
	retried_as::text, retried_by, dropped_at, dropped_by`

// DeadLetter returns the dead letter of transaction id, or an error wrapping
// store.ErrNotFound.
func (s *Store) DeadLetter(ctx context.Context, id string) (*store.DeadLetter, error) {
	if !txn.ValidID(id) {
		return nil, fmt.Errorf("dead letter %s: %w", id, store.ErrNotFound)
	}
	row := s.pool.QueryRow(ctx, `select `+deadLetterColumns+` from spool_dead_letters where txn_id = $1`, id)
	dl, err := scanDeadLetter(row)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("dead letter %s: %w", id, store.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("dead letter %s: %w", id, err)
	}
	return dl, nil
}

func scanDeadLetter(row pgx.Row) (*store.DeadLetter, error) {
	var (
		body, msg                string
		code, retried, retriedBy *string
		droppedBy                *string
		dropped                  *time.Time
		dl                       = &store.DeadLetter{Tx: new(txn.Transaction)}
	)
	if err := row.Scan(&body, &msg, &code, &dl.FailedAt, &dl.Attempts, &dl.FirstFailedAt, &retried, &retriedBy, &dropped, &droppedBy); err != nil {
		return nil, err
	}
	dl.Error = msg
	dl.FailedAt, dl.FirstFailedAt = dl.FailedAt.UTC(), dl.FirstFailedAt.UTC()
	if code != nil {
		dl.Code = *code
	}
	if retried != nil {
		dl.RetriedAs = *retried
	}
	if retriedBy != nil {
		dl.RetriedBy = *retriedBy
	}
	if dropped != nil {
		dl.DroppedAt = dropped.UTC()
	}
	if droppedBy != nil {
		dl.DroppedBy = *droppedBy
	}
	d := json.NewDecoder(bytes.NewReader([]byte(body)))
	d.UseNumber()
	if err := d.Decode(dl.Tx); err != nil {
		return nil, fmt.Errorf("decode transaction: %w", err)
	}
	return dl, nil
}

// ListDeadLetters lists dead letters by the time they last failed, a page at
// a time (see store.DeadLetterFilter).
func (s *Store) ListDeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]*store.DeadLetter, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if !f.All {
		where = append(where, "retried_as is null", "dropped_at is null")
	}
	if f.Table != "" {
		where = append(where, "strpos(tables, "+arg(","+f.Table+",")+") > 0")
	}
	if f.Code != "" {
		where = append(where, "starts_with(code, "+arg(f.Code)+"::text)")
	}
	if !f.Since.IsZero() {
		where = append(where, "failed_at >= "+arg(f.Since.UTC().Format(schema.TimeFormat))+"::timestamptz")
	}
	if f.After != "" {
		if !txn.ValidID(f.After) {
			return nil, nil // no dead letter has that id, so none comes after it
		}
		where = append(where, "(failed_at, txn_id) > (select failed_at, txn_id from spool_dead_letters where txn_id = "+arg(f.After)+"::uuid)")
	}
	text := `select ` + deadLetterColumns + ` from spool_dead_letters`
	if len(where) > 0 {
		text += " where " + strings.Join(where, " and ")
	}
	text += " order by failed_at, txn_id"
	if f.Limit > 0 {
		text += " limit " + arg(int64(f.Limit))
	}
	rows, err := s.pool.Query(ctx, text, args...)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.AppendRows([]*store.DeadLetter(nil), rows, func(r pgx.CollectableRow) (*store.DeadLetter, error) {
		return scanDeadLetter(r)
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// DropDeadLetter marks a dead letter dropped by who; the record stays for
// the audit. A dead letter dropped or retried already is not found.
func (s *Store) DropDeadLetter(ctx context.Context, id, who string) error {
	if !txn.ValidID(id) {
		return fmt.Errorf("dead letter %s: %w", id, store.ErrNotFound)
	}
	tag, err := s.pool.Exec(ctx, `update spool_dead_letters set dropped_at = now(), dropped_by = $1 where txn_id = $2 and dropped_at is null and retried_as is null`, who, id)
	if err != nil {
		return fmt.Errorf("drop dead letter %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("dead letter %s: %w", id, store.ErrNotFound)
	}
	return nil
}
