package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// scan runs a select of every column of t on the read pool and decodes the
// rows into canonical values.
func (s *Store) scan(ctx context.Context, t *schema.Table, text string, args []any) ([]schema.Row, error) {
	rows, err := s.rdb.QueryContext(ctx, text, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	raw := make([]any, len(t.Columns))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	var out []schema.Row
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		r := make(schema.Row, len(t.Columns))
		for i, c := range t.Columns {
			v, err := decode(c, raw[i])
			if err != nil {
				return nil, err
			}
			r[c.Name] = v
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RecordLogHead records when the oldest transaction log holds was made,
// and returns the earliest such time of any log (see store.Store).
func (s *Store) RecordLogHead(ctx context.Context, log string, oldest time.Time) (time.Time, error) {
	now := time.Now().UTC().Format(schema.TimeFormat)
	if _, err := s.wdb.ExecContext(ctx, `insert into spool_log_heads (log, oldest, recorded_at) values (?, ?, ?)
		on conflict (log) do update set oldest = excluded.oldest, recorded_at = excluded.recorded_at`,
		log, oldest.UTC().Format(schema.TimeFormat), now); err != nil {
		return time.Time{}, fmt.Errorf("record the head of log %s: %w", log, err)
	}
	var earliest string
	if err := s.wdb.QueryRowContext(ctx, `select min(oldest) from spool_log_heads`).Scan(&earliest); err != nil {
		return time.Time{}, fmt.Errorf("read the logs' heads: %w", err)
	}
	t, err := time.Parse(schema.TimeFormat, earliest)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the logs' heads: %w", err)
	}
	return t, nil
}

// PruneApplied deletes the records of at most limit transactions applied
// before appliedBefore with ids below idBefore (see store.Store). The
// key's order finds them; applied_at, text at a fixed width, compares as
// the times it holds.
func (s *Store) PruneApplied(ctx context.Context, appliedBefore time.Time, idBefore string, limit int) (int64, error) {
	res, err := s.wdb.ExecContext(ctx, `delete from spool_applied where txn_id in (
		select txn_id from spool_applied where txn_id < ? and applied_at < ? order by txn_id limit ?)`,
		idBefore, appliedBefore.UTC().Format(schema.TimeFormat), limit)
	if err != nil {
		return 0, fmt.Errorf("prune spool_applied: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune spool_applied: %w", err)
	}
	return n, nil
}

// Applied tells whether transaction id was applied, and when.
func (s *Store) Applied(ctx context.Context, id string) (time.Time, bool, error) {
	var at string
	err := s.rdb.QueryRowContext(ctx, `select applied_at from spool_applied where txn_id = ?`, id).Scan(&at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return time.Time{}, false, nil
	case err != nil:
		return time.Time{}, false, fmt.Errorf("look up applied %s: %w", id, err)
	}
	ts, err := time.Parse(schema.TimeFormat, at)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("look up applied %s: %w", id, err)
	}
	return ts, true, nil
}

// deadLetterColumns are the columns scanDeadLetter reads, in its order.
const deadLetterColumns = `txn_id, tx, error, code, failed_at, attempts, first_failed_at, retried_as, retried_by, dropped_at, dropped_by`

// DeadLetter returns the dead letter of transaction id, or an error wrapping
// store.ErrNotFound.
func (s *Store) DeadLetter(ctx context.Context, id string) (*store.DeadLetter, error) {
	row := s.rdb.QueryRowContext(ctx, `select `+deadLetterColumns+` from spool_dead_letters where txn_id = ?`, id)
	dl, err := scanDeadLetter(row.Scan)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("dead letter %s: %w", id, store.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("dead letter %s: %w", id, err)
	}
	return dl, nil
}

func scanDeadLetter(scan func(...any) error) (*store.DeadLetter, error) {
	var (
		id, body, msg, at                               string
		attempts                                        int
		code, first, retried, retriedBy, dropped, whoBy sql.NullString
	)
	if err := scan(&id, &body, &msg, &code, &at, &attempts, &first, &retried, &retriedBy, &dropped, &whoBy); err != nil {
		return nil, err
	}
	dl := &store.DeadLetter{Tx: new(txn.Transaction), Error: msg, Code: code.String, Attempts: attempts, RetriedAs: retried.String, RetriedBy: retriedBy.String, DroppedBy: whoBy.String}
	d := json.NewDecoder(bytes.NewReader([]byte(body)))
	d.UseNumber()
	if err := d.Decode(dl.Tx); err != nil {
		return nil, fmt.Errorf("decode transaction: %w", err)
	}
	var err error
	if dl.FailedAt, err = time.Parse(schema.TimeFormat, at); err != nil {
		return nil, err
	}
	dl.FirstFailedAt = dl.FailedAt
	if first.Valid {
		if dl.FirstFailedAt, err = time.Parse(schema.TimeFormat, first.String); err != nil {
			return nil, err
		}
	}
	if dropped.Valid {
		if dl.DroppedAt, err = time.Parse(schema.TimeFormat, dropped.String); err != nil {
			return nil, err
		}
	}
	return dl, nil
}

// ListDeadLetters lists dead letters by the time they last failed, a page at
// a time.
func (s *Store) ListDeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]*store.DeadLetter, error) {
	where := []string{"1 = 1"}
	var args []any
	if !f.All {
		where = append(where, "retried_as is null", "dropped_at is null")
	}
	if f.Table != "" {
		where = append(where, "instr(tables, ?) > 0")
		args = append(args, ","+f.Table+",")
	}
	if f.Code != "" {
		where = append(where, "substr(code, 1, length(?)) = ?")
		args = append(args, f.Code, f.Code)
	}
	if !f.Since.IsZero() {
		where = append(where, "failed_at >= ?")
		args = append(args, f.Since.UTC().Format(schema.TimeFormat))
	}
	if f.After != "" {
		where = append(where, "(failed_at, txn_id) > (select failed_at, txn_id from spool_dead_letters where txn_id = ?)")
		args = append(args, f.After)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = -1
	}
	args = append(args, limit)
	rows, err := s.rdb.QueryContext(ctx, `select `+deadLetterColumns+` from spool_dead_letters where `+
		strings.Join(where, " and ")+` order by failed_at, txn_id limit ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	var out []*store.DeadLetter
	for rows.Next() {
		dl, err := scanDeadLetter(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		out = append(out, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// DropDeadLetter marks a dead letter dropped by who; the record stays for
// the audit. A dead letter dropped or retried already is not found.
func (s *Store) DropDeadLetter(ctx context.Context, id, who string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	res, err := s.wdb.ExecContext(ctx, `update spool_dead_letters set dropped_at = ?, dropped_by = ? where txn_id = ? and dropped_at is null and retried_as is null`,
		time.Now().UTC().Format(schema.TimeFormat), who, id)
	if err != nil {
		return fmt.Errorf("drop dead letter %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("drop dead letter %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("dead letter %s: %w", id, store.ErrNotFound)
	}
	return nil
}
