// Package idempotency keeps the idempotency keys of a spool with a local
// log. A key is taken exactly when its write is in the log: the log's
// record of the transaction carries the key and the record a repeat is
// answered from (txn.Idempotency). While the transaction is in the log,
// Local holds the key in memory: Wrap's appends add it, and at start Hold
// takes it back in the pass overlay.NewLogged makes over the log. Once
// the transaction is applied or dead-lettered, the settler moves its key
// to a SQLite file (Persist) before the log lets the transaction go, and
// there it stays for the retention. A Redis log keeps its keys itself, in
// the append script (redislog.Log.LookupKey).
package idempotency

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// DefaultRetention is how long a key stays taken: a client's retries of
// one write come within it.
const DefaultRetention = 24 * time.Hour

// pruneEvery is how often Persist also deletes the keys past retention.
const pruneEvery = time.Minute

// Local is the record of the keys of a local log.
type Local struct {
	db        *sql.DB
	retention time.Duration
	now       func() time.Time

	mu        sync.Mutex
	pending   map[string][]byte // keys of transactions still in the log
	lastPrune time.Time
}

// Open opens (or creates) the file of keys at path. retention <= 0 means
// DefaultRetention; now is the clock (time.Now if nil).
func Open(ctx context.Context, path string, retention time.Duration, now func() time.Time) (*Local, error) {
	if retention <= 0 {
		retention = DefaultRetention
	}
	if now == nil {
		now = time.Now
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("idempotency: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `create table if not exists spool_keys (
		key     text primary key,
		record  blob not null,
		created integer not null -- unix milliseconds
	)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("idempotency: create %s: %w", path, err)
	}
	return &Local{db: db, retention: retention, now: now, pending: map[string][]byte{}}, nil
}

// Close closes the file.
func (l *Local) Close() error { return l.db.Close() }

// Hold keeps the key of tx, which is in the log: each append's, and at
// start each transaction the log still holds (overlay.NewLogged hands
// them over).
func (l *Local) Hold(tx *txn.Transaction) {
	if tx.Idempotency == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pending[tx.Idempotency.Key]; !ok {
		l.pending[tx.Idempotency.Key] = tx.Idempotency.Record
	}
}

// LookupKey returns the record of key, if a write took it within the
// retention.
func (l *Local) LookupKey(ctx context.Context, key string) ([]byte, bool, error) {
	l.mu.Lock()
	rec, ok := l.pending[key]
	l.mu.Unlock()
	if ok {
		return rec, true, nil
	}
	err := l.db.QueryRowContext(ctx, `select record from spool_keys where key = ? and created >= ?`,
		key, l.now().Add(-l.retention).UnixMilli()).Scan(&rec)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("idempotency: look up key: %w", err)
	}
	return rec, true, nil
}

// Persist moves the keys of txs (applied or dead-lettered) to the file, in
// one durable transaction, then forgets them in memory. It also deletes
// the keys past retention, once a minute.
func (l *Local) Persist(ctx context.Context, txs []*txn.Transaction) error {
	var keyed []*txn.Transaction
	for _, tx := range txs {
		if tx.Idempotency != nil {
			keyed = append(keyed, tx)
		}
	}
	if len(keyed) == 0 {
		return nil
	}
	now := l.now()
	err := l.inTx(ctx, func(tx *sql.Tx) error {
		for _, t := range keyed {
			if _, err := tx.ExecContext(ctx, `insert into spool_keys (key, record, created) values (?, ?, ?) on conflict (key) do nothing`,
				t.Idempotency.Key, []byte(t.Idempotency.Record), now.UnixMilli()); err != nil {
				return err
			}
		}
		l.mu.Lock()
		due := now.Sub(l.lastPrune) >= pruneEvery
		l.mu.Unlock()
		if due {
			if _, err := tx.ExecContext(ctx, `delete from spool_keys where created < ?`, now.Add(-l.retention).UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("idempotency: persist %d keys: %w", len(keyed), err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range keyed {
		delete(l.pending, t.Idempotency.Key)
	}
	if now.Sub(l.lastPrune) >= pruneEvery {
		l.lastPrune = now
	}
	return nil
}

func (l *Local) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Wrap returns log with appends that hold their keys in l once durable.
func (l *Local) Wrap(log txlog.Log) txlog.Log { return &keyed{Log: log, l: l} }

type keyed struct {
	txlog.Log
	l *Local
}

func (k *keyed) Append(ctx context.Context, tx *txn.Transaction) (txlog.Entry, error) {
	e, err := k.Log.Append(ctx, tx)
	if err == nil {
		k.l.Hold(tx)
	}
	return e, err
}
