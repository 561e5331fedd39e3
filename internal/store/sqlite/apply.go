package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/sqlgen"
	"github.com/spoolgw/spool/internal/txn"
)

// The fixed statements of a batch.
const (
	sqlMarkApplied = `insert into spool_applied (txn_id, applied_at) values (?, ?)`
	// A retry's dead letter counts the attempts of the transactions it
	// retries and keeps the first failure's time.
	sqlDeadLetter = `insert into spool_dead_letters (txn_id, tx, error, code, failed_at, tables, attempts, first_failed_at)
		values (?1, ?2, ?3, ?4, ?5, ?6,
			coalesce((select attempts + 1 from spool_dead_letters where txn_id = ?7), 1),
			coalesce((select coalesce(first_failed_at, failed_at) from spool_dead_letters where txn_id = ?7), ?5))
		on conflict (txn_id) do update set tx = excluded.tx, error = excluded.error,
		code = excluded.code, failed_at = excluded.failed_at`
	sqlMarkRetried = `update spool_dead_letters set retried_as = ?, retried_by = ? where txn_id = ?`
	// sqlRetryTargets reads the dead letters named in the JSON array ?1
	// (the batch's retries'; see store.RetryTargets). The batch holds the
	// write lock, so no drop comes between this and its commit.
	sqlRetryTargets = `select txn_id, coalesce(retried_as, ''), dropped_at is not null
		from spool_dead_letters where txn_id in (select value from json_each(?1))`
	// sqlDropSuperseded drops the dead letter of a superseded retry.
	sqlDropSuperseded = `update spool_dead_letters set dropped_at = ?, dropped_by = ? where txn_id = ?`
	sqlSavepoint      = `savepoint spool_tx`
	sqlRelease        = `release spool_tx`
	sqlRollback       = `rollback to spool_tx`
)

// ApplyBatch applies the batch in one BEGIN IMMEDIATE transaction; see
// store.Store. It first runs the whole batch at once with successive writes
// to one row coalesced (runCoalesced); if any statement fails permanently,
// that is rolled back and the batch runs again with each transaction in a
// savepoint of its own, so that only the failing ones are dead-lettered.
func (s *Store) ApplyBatch(ctx context.Context, batch []*txn.Transaction, gate store.Gate) ([]store.Outcome, error) {
	outcomes := make([]store.Outcome, len(batch))
	if len(batch) == 0 {
		return outcomes, nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.wdb.BeginTx(ctx, nil) // BEGIN IMMEDIATE, by the DSN's _txlock
	if err != nil {
		return nil, fmt.Errorf("apply batch: begin: %w", err)
	}
	b := &batchRun{
		s: s, tx: tx, gate: gate,
		now:     time.Now().UTC().Format(schema.TimeFormat),
		stmts:   make(map[string]*sql.Stmt),
		opStmts: make(map[sqlgen.Key]*sql.Stmt),
	}
	defer s.stmts.fill(context.WithoutCancel(ctx)) // once close has ended tx
	defer b.close()
	if err := b.fence(ctx); err != nil {
		return nil, fmt.Errorf("apply batch: %w", err)
	}
	if err := b.lookup(ctx, batch); err != nil {
		return nil, fmt.Errorf("apply batch: look up earlier runs: %w", err)
	}
	out, ok, err := b.runCoalesced(ctx, batch)
	if err != nil {
		return nil, fmt.Errorf("apply batch: %w", err)
	}
	if ok {
		outcomes = out
	} else {
		for i, t := range batch {
			if outcomes[i], err = b.apply(ctx, t); err != nil {
				return nil, fmt.Errorf("apply batch: transaction %s: %w", t.ID, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("apply batch: commit: %w", err)
	}
	return outcomes, nil
}

// batchRun is one attempt at a batch: its transaction and the statements
// prepared on it, reused by every transaction of the batch.
type batchRun struct {
	s     *Store
	tx    *sql.Tx
	gate  store.Gate
	now   string
	stmts map[string]*sql.Stmt
	// opStmts are the statements of operations, by table, op and columns.
	opStmts map[sqlgen.Key]*sql.Stmt
	// applied and dead hold the transactions of the batch that earlier
	// runs applied or dead-lettered, and those this run has so far.
	applied map[string]bool
	dead    map[string]error
	// retries holds the dead letters the batch's retries name.
	retries store.RetryTargets
}

// close rolls back unless committed (a no-op then) and frees the statements
// (opStmts are some of stmts).
func (b *batchRun) close() {
	for _, st := range b.stmts {
		st.Close()
	}
	b.tx.Rollback() //nolint:errcheck // ErrTxDone after Commit; a failed rollback is reported by the error already returned
}

// stmt returns the statement for text on the batch's transaction: the
// one the store keeps prepared, or else prepared now, once per batch.
func (b *batchRun) stmt(ctx context.Context, text string) (*sql.Stmt, error) {
	if st, ok := b.stmts[text]; ok {
		return st, nil
	}
	st, err := b.s.stmts.on(ctx, b.tx, text)
	if err != nil {
		return nil, err
	}
	b.stmts[text] = st
	return st, nil
}

func (b *batchRun) exec(ctx context.Context, text string, args ...any) (sql.Result, error) {
	st, err := b.stmt(ctx, text)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// apply runs one transaction. A returned error is transient and fails the
// batch; a permanent failure is the Outcome's Err.
func (b *batchRun) apply(ctx context.Context, t *txn.Transaction) (store.Outcome, error) {
	if o, run, err := b.judge(ctx, t); err != nil || !run {
		return o, err
	}
	if _, err := b.exec(ctx, sqlSavepoint); err != nil {
		return store.Outcome{}, fmt.Errorf("savepoint: %w", err)
	}
	for i, op := range t.Operations {
		err := b.op(ctx, i, op)
		if err == nil {
			continue
		}
		var ae *store.ApplyError
		if !errors.As(err, &ae) {
			return store.Outcome{}, fmt.Errorf("operation %d: %w", i, err)
		}
		if _, err := b.exec(ctx, sqlRollback); err != nil {
			return store.Outcome{}, fmt.Errorf("roll back to savepoint: %w", err)
		}
		if _, err := b.exec(ctx, sqlRelease); err != nil {
			return store.Outcome{}, fmt.Errorf("release savepoint: %w", err)
		}
		if err := b.deadLetter(ctx, t, ae, ae.Code); err != nil {
			return store.Outcome{}, err
		}
		b.failed(t, ae)
		return store.Outcome{Err: ae}, nil
	}
	if err := b.recordApplied(ctx, []*txn.Transaction{t}); err != nil {
		return store.Outcome{}, err
	}
	b.applied[t.ID] = true
	if _, err := b.exec(ctx, sqlRelease); err != nil {
		return store.Outcome{}, fmt.Errorf("release savepoint: %w", err)
	}
	return store.Outcome{}, nil
}

// judge consults earlier runs and the gate about t: run is true if t is to
// run; otherwise o is its outcome, and a refusal is dead-lettered.
func (b *batchRun) judge(ctx context.Context, t *txn.Transaction) (o store.Outcome, run bool, err error) {
	if b.applied[t.ID] {
		return store.Outcome{Duplicate: true}, false, nil
	}
	if prior := b.dead[t.ID]; prior != nil {
		// Dead-lettered by an earlier run whose log ack was lost: its fate is
		// decided; running it again could apply what was reported failed.
		b.failed(t, prior)
		return store.Outcome{Err: prior}, false, nil
	}
	if reason := b.retries.Admit(t); reason != nil {
		// Not a failure of t's operations: nothing is poisoned.
		if err := b.recordDeadLetter(ctx, t, reason, store.CodeSuperseded); err != nil {
			return store.Outcome{}, false, err
		}
		if _, err := b.exec(ctx, sqlDropSuperseded, b.now, store.DroppedBySpool, t.ID); err != nil {
			return store.Outcome{}, false, fmt.Errorf("drop superseded retry: %w", err)
		}
		return store.Outcome{Err: reason}, false, nil
	}
	if b.gate != nil {
		if reason := b.gate.Admit(t); reason != nil {
			if err := b.deadLetter(ctx, t, reason, ""); err != nil {
				return store.Outcome{}, false, err
			}
			b.failed(t, reason)
			return store.Outcome{Err: reason}, false, nil
		}
	}
	return store.Outcome{}, true, nil
}

func (b *batchRun) failed(t *txn.Transaction, err error) {
	if b.gate != nil {
		b.gate.Failed(t, err)
	}
}

// priorFailure is the Outcome.Err of a transaction that an earlier run had
// dead-lettered already: the batch was replayed after its log ack was lost.
type priorFailure struct {
	id, msg string
}

func (e *priorFailure) Error() string {
	return fmt.Sprintf("transaction %s was dead-lettered earlier: %s", e.id, e.msg)
}

// sqlLookup finds which of the ids in the JSON array ?1 an earlier run
// applied (error null) or dead-lettered: one text for every batch, kept
// prepared, where a list of parameters would be a new text per batch size.
const sqlLookup = `select txn_id, null from spool_applied where txn_id in (select value from json_each(?1))
	union all select txn_id, error from spool_dead_letters where txn_id in (select value from json_each(?1))`

// lookup finds which transactions of the batch an earlier run applied or
// dead-lettered, in one query for the whole batch.
func (b *batchRun) lookup(ctx context.Context, batch []*txn.Transaction) error {
	b.applied = make(map[string]bool)
	b.dead = make(map[string]error)
	ids := make([]string, len(batch))
	for i, t := range batch {
		ids[i] = t.ID
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	st, err := b.stmt(ctx, sqlLookup)
	if err != nil {
		return err
	}
	rows, err := st.QueryContext(ctx, string(list))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id  string
			msg sql.NullString
		)
		if err := rows.Scan(&id, &msg); err != nil {
			return err
		}
		if msg.Valid {
			b.dead[id] = &priorFailure{id: id, msg: msg.String}
		} else {
			b.applied[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return b.lookupRetries(ctx, batch)
}

// lookupRetries reads the dead letters the batch's retries name, if any.
func (b *batchRun) lookupRetries(ctx context.Context, batch []*txn.Transaction) error {
	b.retries = store.RetryTargets{}
	ids := store.RetriedIDs(batch)
	if len(ids) == 0 {
		return nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	rows, err := b.tx.QueryContext(ctx, sqlRetryTargets, string(list))
	if err != nil {
		return fmt.Errorf("retried dead letters: %w", err)
	}
	defer rows.Close()
	return b.retries.Read(rows)
}

// deadLetter records t as failed with cause, in the batch's transaction,
// and links the dead letter t retries, if any, to it.
func (b *batchRun) deadLetter(ctx context.Context, t *txn.Transaction, cause error, code string) error {
	if err := b.recordDeadLetter(ctx, t, cause, code); err != nil {
		return err
	}
	if t.RetryOf != "" {
		if _, err := b.exec(ctx, sqlMarkRetried, t.ID, t.Principal, t.RetryOf); err != nil {
			return fmt.Errorf("record retry: %w", err)
		}
	}
	return nil
}

// recordDeadLetter records t as failed with cause.
func (b *batchRun) recordDeadLetter(ctx context.Context, t *txn.Transaction, cause error, code string) error {
	body, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	var c sql.NullString
	if code != "" {
		c = sql.NullString{String: code, Valid: true}
	}
	if _, err := b.exec(ctx, sqlDeadLetter, t.ID, string(body), cause.Error(), c, b.now, store.TableList(t), t.RetryOf); err != nil {
		return fmt.Errorf("record dead letter: %w", err)
	}
	b.dead[t.ID] = cause // a second copy in this batch meets the same fate
	return nil
}

// fence records the gate's fencing token for its log, or fails with
// store.ErrFenced if a newer one was recorded: an applier that lost its
// lease commits nothing.
func (b *batchRun) fence(ctx context.Context) error {
	if b.gate == nil {
		return nil
	}
	log, token := b.gate.Fence()
	if token == 0 {
		return nil
	}
	res, err := b.tx.ExecContext(ctx, `insert into spool_fence (log, token) values (?, ?)
		on conflict (log) do update set token = excluded.token where spool_fence.token <= excluded.token`, log, token)
	if err != nil {
		return fmt.Errorf("check fencing token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("check fencing token: %w", err)
	} else if n == 0 {
		return fmt.Errorf("log %q, token %d: %w", log, token, store.ErrFenced)
	}
	return nil
}
