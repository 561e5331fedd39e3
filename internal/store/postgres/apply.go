package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// The fixed statements of a batch.
const (
	sqlBegin     = `begin isolation level read committed`
	sqlImmediate = `set constraints all immediate`
	sqlFence     = `insert into spool_fence (log, token) values ($1, $2)
		on conflict (log) do update set token = excluded.token where spool_fence.token <= excluded.token`
	sqlLookup = `select txn_id::text, null::text from spool_applied where txn_id = any($1::uuid[])
		union all select txn_id::text, error from spool_dead_letters where txn_id = any($1::uuid[])`
	// sqlRecordApplied records the ids of the fast path's batch.
	sqlRecordApplied = `insert into spool_applied (txn_id) select unnest($1::uuid[])`
	// sqlMarkAppliedOne records the id of one transaction of the slow path;
	// on conflict, another applier recorded it first, and the count of rows
	// shows it.
	sqlMarkAppliedOne = `insert into spool_applied (txn_id) values ($1) on conflict do nothing`
	// sqlDeadLetter records a dead letter. A retry's dead letter ($6 is
	// the transaction it retries) counts the attempts of the transactions
	// it retries and keeps the first failure's time.
	sqlDeadLetter = `insert into spool_dead_letters (txn_id, tx, error, code, failed_at, tables, attempts, first_failed_at)
		values ($1, $2, $3, $4, now(), $5,
			coalesce((select attempts + 1 from spool_dead_letters where txn_id = $6::uuid), 1),
			coalesce((select coalesce(first_failed_at, failed_at) from spool_dead_letters where txn_id = $6::uuid), now()))
		on conflict (txn_id) do update set tx = excluded.tx, error = excluded.error,
		code = excluded.code, failed_at = excluded.failed_at`
	// sqlMarkRetried links the dead letter a transaction retries to it,
	// whether the retry applied or failed too.
	sqlMarkRetried = `update spool_dead_letters set retried_as = $1 where txn_id = $2`
	// sqlRetryTargets reads the dead letters the batch's retries name,
	// and locks them: a drop waits for the batch, and then finds them
	// retried (see store.RetryTargets).
	sqlRetryTargets = `select txn_id::text, coalesce(retried_as::text, ''), dropped_at is not null
		from spool_dead_letters where txn_id = any($1::uuid[]) for update`
	// sqlFenced and sqlDeadBefore are the checks of the one-round-trip
	// path (see runFast) as statements: each fails with a division by
	// zero where the first round trip would have read, respectively, a
	// newer fencing token than ours, and a transaction of the batch that
	// an earlier run dead-lettered.
	sqlFenced     = `select 1 / (select count(*) from spool_fence where log = $1 and token = $2)::int`
	sqlDeadBefore = `select 1 / (case when exists (select 1 from spool_dead_letters where txn_id = any($1::uuid[])) then 0 else 1 end)`
	// sqlDropSuperseded drops the dead letter of a superseded retry.
	sqlDropSuperseded = `update spool_dead_letters set dropped_at = now(), dropped_by = $2 where txn_id = $1`
	// sqlCommitLSN is the commit's position in the WAL, or past it: the
	// insert position is after every record inserted so far, the commit
	// record included, whatever synchronous_commit says.
	sqlCommitLSN  = `select pg_current_wal_insert_lsn()::text`
	sqlSavepoint  = `savepoint spool_tx`
	sqlRelease    = `release savepoint spool_tx`
	sqlRollbackTo = `rollback to savepoint spool_tx`
	sqlCommit     = `commit`
)

// errUncached says the slow path met a statement it took for prepared
// that was not: the attempt is rolled back and runs again without relying
// on the statement cache.
var errUncached = errors.New("a statement left the statement cache")

// errSlowPath says the fast path met a permanent failure: the attempt is
// rolled back and the batch runs again with a savepoint per transaction.
var errSlowPath = errors.New("a transaction of the batch failed permanently")

// errLookupFirst says the fast path's one round trip cannot settle the
// batch: it met a transaction an earlier run applied or dead-lettered, or
// one the gate refuses. The attempt is rolled back, and the fast path
// runs again, looking up earlier runs first.
var errLookupFirst = errors.New("the batch needs its earlier runs looked up first")

// ApplyBatch applies the batch in one database transaction; see
// store.Store and the package documentation for the two paths.
func (s *Store) ApplyBatch(ctx context.Context, batch []*txn.Transaction, gate store.Gate) ([]store.Outcome, error) {
	if len(batch) == 0 {
		return []store.Outcome{}, nil
	}
	for _, t := range batch {
		if !txn.ValidID(t.ID) {
			return nil, fmt.Errorf("apply batch: transaction id %q is not a UUID", t.ID)
		}
	}
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply batch: %w", err)
	}
	defer pc.Release()
	ran := make(map[string]bool)
	out, err := s.attempt(ctx, pc, batch, gate, fastLean, ran)
	if errors.Is(err, errLookupFirst) {
		out, err = s.attempt(ctx, pc, batch, gate, fastLookup, ran)
	}
	if errors.Is(err, errSlowPath) {
		out, err = s.attempt(ctx, pc, batch, gate, slowPath, ran)
	}
	if errors.Is(err, errUncached) {
		out, err = s.attempt(ctx, pc, batch, gate, slowPath, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("apply batch: %w", err)
	}
	return out, nil
}

// path is how an attempt runs a batch.
type path int

const (
	// fastLean is the fast path in one round trip where it can be (see
	// runFast).
	fastLean path = iota
	// fastLookup is the fast path that looks up earlier runs first.
	fastLookup
	slowPath
)

// attempt runs the batch once, on the given path, in a database
// transaction of its own, and commits it.
// ran, if not nil, collects the statements that ran on the connection.
func (s *Store) attempt(ctx context.Context, pc *pgxpool.Conn, batch []*txn.Transaction, gate store.Gate, p path, ran map[string]bool) ([]store.Outcome, error) {
	slow := p == slowPath
	b := &batchRun{s: s, c: pc.Conn(), gate: gate, slow: slow, lean: p == fastLean && !s.noLean, ran: ran,
		sql: make(map[stmtKey]string), shapes: make(map[string]*insertShape)}
	defer rollback(ctx, b.c) // a no-op after commit
	var (
		out []store.Outcome
		err error
	)
	if slow {
		var finish func() error
		if finish, err = b.start(ctx, batch); err == nil {
			err = finish()
		}
		if err == nil {
			out, err = b.runSlow(ctx, batch)
		}
	} else {
		out, err = b.runFast(ctx, batch)
	}
	if err != nil {
		return nil, err
	}
	lsn := b.lsn
	if !b.committed {
		if lsn, err = b.commit(ctx); err != nil {
			if _, permanent := classify(err); permanent && !slow {
				return nil, errSlowPath // a deferred constraint; the slow path checks them at once
			}
			return nil, err
		}
	}
	for i := range out {
		out[i].LSN = lsn
	}
	return out, nil
}

// commit commits the attempt and returns the commit's position in the WAL,
// in one round trip. If the position cannot be read after the commit, the
// error makes the applier run the batch again, which then finds every
// transaction a duplicate and reports a later position.
func (b *batchRun) commit(ctx context.Context) (txn.LSN, error) {
	br := b.c.SendBatch(ctx, batchOf([]stmt{{sql: sqlCommit}, {sql: sqlCommitLSN}}))
	defer br.Close()
	return readCommit(br)
}

// readCommit reads the results of COMMIT and of sqlCommitLSN after it.
func readCommit(br pgx.BatchResults) (txn.LSN, error) {
	tag, err := br.Exec()
	if err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		return 0, fmt.Errorf("commit: the database answered %q", tag)
	}
	var text string
	if err := br.QueryRow().Scan(&text); err != nil {
		return 0, fmt.Errorf("read the commit position: %w", err)
	}
	lsn, err := txn.ParseLSN(text)
	if err != nil {
		return 0, fmt.Errorf("read the commit position: %w", err)
	}
	return lsn, nil
}

// batchRun is one attempt at a batch.
type batchRun struct {
	s *Store
	c *pgx.Conn
	// busy, if set, reads the results of a pipeline still in flight on c;
	// settle calls it before c runs anything else.
	busy    func() error
	busyErr error
	gate    store.Gate
	slow    bool
	// lean asks the fast path for one round trip where it can (runFast).
	lean bool
	// sql and shapes cache the SQL text of operations, and the shape of
	// inserts by their SQL, for the attempt.
	sql    map[stmtKey]string
	shapes map[string]*insertShape
	// reloaded is set once the attempt has read the catalog again.
	reloaded bool
	// applied and dead hold the transactions of the batch that earlier
	// runs applied or dead-lettered, and those this attempt has so far.
	applied map[string]bool
	dead    map[string]error
	// retries holds the dead letters the batch's retries name.
	retries store.RetryTargets
	// ran holds the SQL of the statements that ran on the connection in
	// this call (nil: do not rely on the statement cache).
	ran map[string]bool
	// held is set while the savepoint of the last transaction the slow
	// path applied is still open.
	held bool
	// committed is set once the fast path committed in its pipeline, at
	// lsn.
	committed bool
	lsn       txn.LSN
	// facts says, on the fast path, which tables writes may be coalesced
	// in (see coalesce); rules caches what it makes of each.
	facts map[string]mergeFact
	rules map[string]*store.MergeRules
}

// settle reads the results of the pipeline in flight, if any, and returns
// its error (again, if it was read before).
func (b *batchRun) settle() error {
	if b.busy != nil {
		b.busyErr, b.busy = b.busy(), nil
	}
	return b.busyErr
}

// fence returns the lease of the batch, and whether there is one to check.
func (b *batchRun) fence() (log string, token int64, ok bool) {
	if b.gate == nil {
		return "", 0, false
	}
	log, token = b.gate.Fence()
	return log, token, token != 0
}

// start begins the transaction, checks the fence and looks up which
// transactions earlier runs applied or dead-lettered, in one round trip;
// on the fast path, when the batch touches a row twice, it also reads the
// merge facts (see coalesce).
// It sends the pipeline and returns the function that reads its results:
// the connection is busy until then.
func (b *batchRun) start(ctx context.Context, batch []*txn.Transaction) (finish func() error, err error) {
	pb := &pgx.Batch{}
	log, token, fenced := b.fence()
	idList, err := batchIDs(batch)
	if err != nil {
		return nil, err
	}
	pb.Queue(sqlBegin)
	if b.slow {
		pb.Queue(sqlImmediate)
	}
	if fenced {
		pb.Queue(sqlFence, log, token)
	}
	pb.Queue(sqlLookup, idList)
	b.retries = store.RetryTargets{}
	retried, err := retriedList(batch)
	if err != nil {
		return nil, err
	}
	if retried != "" {
		pb.Queue(sqlRetryTargets, retried)
	}
	coalescing := !b.slow && !b.s.noCoalesce && repeats(batch)
	if coalescing {
		pb.Queue(sqlMergeFacts)
	}
	br := b.c.SendBatch(ctx, pb)
	return func() error {
		err := b.readStart(br, fenced)
		if err == nil && retried != "" {
			err = b.readRetryTargets(br)
		}
		if err == nil && coalescing {
			b.facts, err = readMergeFacts(br)
		}
		if closeErr := br.Close(); err == nil && closeErr != nil {
			err = fmt.Errorf("look up earlier runs: %w", closeErr)
		}
		if err != nil && errors.Is(err, store.ErrFenced) {
			return fmt.Errorf("log %q, token %d: %w", log, token, err)
		}
		return err
	}, nil
}

func (b *batchRun) readStart(br pgx.BatchResults, fenced bool) error {
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if b.slow {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("set constraints: %w", err)
		}
	}
	if fenced {
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("check fencing token: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return store.ErrFenced
		}
	}
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("look up earlier runs: %w", err)
	}
	defer rows.Close()
	b.applied = make(map[string]bool)
	b.dead = make(map[string]error)
	for rows.Next() {
		var id string
		var msg *string
		if err := rows.Scan(&id, &msg); err != nil {
			return fmt.Errorf("look up earlier runs: %w", err)
		}
		if msg != nil {
			b.dead[id] = &priorFailure{id: id, msg: *msg}
		} else {
			b.applied[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up earlier runs: %w", err)
	}
	return nil
}

// batchIDs is the array literal of the ids of the batch's transactions.
func batchIDs(batch []*txn.Transaction) (string, error) {
	ids := make([]any, len(batch))
	for i, t := range batch {
		ids[i] = t.ID
	}
	return arrayLiteral(schema.UUID, ids)
}

// retriedList is the array literal of the dead letters the batch's
// retries name, "" if none.
func retriedList(batch []*txn.Transaction) (string, error) {
	var ids []any
	for _, id := range store.RetriedIDs(batch) {
		if txn.ValidID(id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "", nil
	}
	return arrayLiteral(schema.UUID, ids)
}

// readRetryTargets reads the result of sqlRetryTargets into b.retries.
func (b *batchRun) readRetryTargets(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("look up retried dead letters: %w", err)
	}
	defer rows.Close()
	return b.retries.Read(rows)
}

// verdict is what the gate and earlier runs say of a transaction before it
// runs.
type verdict int

const (
	runIt verdict = iota
	duplicate
	failedBefore // dead-lettered earlier, or earlier in this batch
	refused
	superseded // a retry of a dead letter retried or dropped already
	// leanRefused: the gate refuses it on the lean path, which then gives
	// way to the lookup (errLookupFirst).
	leanRefused
)

// judge consults earlier runs and the gate about t, records what it
// decides and fills in its outcome; the returned error is the gate's reason
// for a refusal.
func (b *batchRun) judge(t *txn.Transaction, o *store.Outcome) (verdict, error) {
	if b.applied[t.ID] {
		o.Duplicate = true
		return duplicate, nil
	}
	if prior := b.dead[t.ID]; prior != nil {
		// Dead-lettered by an earlier run whose log ack was lost: its fate is
		// decided; running it again could apply what was reported failed.
		b.failed(t, prior)
		o.Err = prior
		return failedBefore, nil
	}
	if reason := b.retries.Admit(t); reason != nil {
		// Not a failure of t's operations: nothing is poisoned.
		b.dead[t.ID] = reason
		o.Err = reason
		return superseded, reason
	}
	if b.gate != nil {
		if reason := b.gate.Admit(t); reason != nil {
			if b.lean {
				// Perhaps a transaction run before, which the lookup never
				// asks the gate about: tell the gate nothing yet.
				return leanRefused, reason
			}
			b.dead[t.ID] = reason
			b.failed(t, reason)
			o.Err = reason
			return refused, reason
		}
	}
	return runIt, nil
}

// runFast runs the batch in two pipelines. The first (see start) begins
// the database transaction, checks the fence and looks up which
// transactions earlier runs applied or dead-lettered; the database works on
// it while the operations are turned into statements. The second records
// the ids of the transactions to run in spool_applied and holds every
// statement of every transaction, successive writes to one row coalesced
// into one statement (see coalesce and store.Coalesce), neighbouring
// inserts of one shape merged (see merge), and the dead letters of the
// transactions the gate refused.
//
// If any statement fails (a coalesced one included), an update or delete
// finds no row, an operation
// cannot be turned into a statement (an unknown table), or another applier
// recorded one of the ids meanwhile, the slow path takes over: it runs the
// transactions one by one, and tells the gate of each failure before it is
// asked about the next transaction.
func (b *batchRun) runFast(ctx context.Context, batch []*txn.Transaction) ([]store.Outcome, error) {
	var head []stmt // the lean path's first statements
	if b.lean && b.leanFits(batch) {
		var err error
		if head, err = b.leanHead(batch); err != nil {
			return nil, err
		}
		b.applied, b.dead, b.retries = map[string]bool{}, map[string]error{}, store.RetryTargets{}
	} else {
		finish, err := b.start(ctx, batch)
		if err != nil {
			return nil, err
		}
		b.busy = finish // the connection is busy with the first pipeline
	}
	plans := make([][]stmt, len(batch))
	planned := make(map[string]bool, len(batch))
	for i, t := range batch {
		if planned[t.ID] {
			continue // a second copy is a duplicate
		}
		planned[t.ID] = true
		ops, fail, err := b.plan(ctx, t)
		if err == nil && fail != nil {
			err = errSlowPath
		}
		if err != nil {
			b.settle() //nolint:errcheck // the attempt is abandoned and rolled back
			return nil, err
		}
		plans[i] = ops
	}
	if err := b.settle(); err != nil {
		return nil, err
	}

	out := make([]store.Outcome, len(batch))
	var (
		ops   []txn.Operation // of the transactions to run, in log order
		opSts []stmt          // the statement of each of ops
		own   []stmt          // spool's: dead letters of refusals, retry links
		ids   []any
	)
	for i, t := range batch {
		v, reason := b.judge(t, &out[i])
		switch v {
		case duplicate, failedBefore:
			continue
		case leanRefused:
			return nil, errLookupFirst
		case refused:
			st, err := deadLetterStmt(t, reason, "")
			if err != nil {
				return nil, err
			}
			own = append(append(own, st), markRetried(t)...)
			continue
		case superseded:
			sts, err := supersededStmts(t, reason)
			if err != nil {
				return nil, err
			}
			own = append(own, sts...)
			continue
		}
		ops = append(ops, t.Operations...)
		opSts = append(opSts, plans[i]...)
		own = append(own, markRetried(t)...)
		b.applied[t.ID] = true
		ids = append(ids, t.ID)
	}
	// Only transactions that run contribute operations to the coalesced
	// plan: duplicates and refusals are settled above.
	stmts, err := b.coalesce(ctx, ops, opSts)
	if err != nil {
		return nil, err
	}
	stmts = append(stmts, own...)
	if len(ids) > 0 {
		list, err := arrayLiteral(schema.UUID, ids)
		if err != nil {
			return nil, err
		}
		// It records every id or fails: a conflict (a unique violation)
		// means another applier recorded one of the ids since the lookup,
		// and the slow path finds out which.
		stmts = append([]stmt{{sql: sqlRecordApplied, args: []any{list}, op: -1}}, stmts...)
	}
	stmts = append(head, merge(stmts)...)
	if !anyChecked(stmts) {
		// Nothing to verify before the commit: it rides in this pipeline,
		// a round trip less (what a distant database costs most).
		res, lsn, err := b.sendAndCommit(ctx, stmts)
		if err != nil {
			return nil, err
		}
		if res.at >= 0 {
			return nil, b.leanFailure(res, stmts, len(head))
		}
		b.committed, b.lsn = true, lsn
		return out, nil
	}
	res, err := b.send(ctx, stmts)
	if err != nil {
		return nil, err
	}
	if res.at >= 0 {
		return nil, b.leanFailure(res, stmts, len(head))
	}
	return out, nil
}

// leanFits reports whether the batch can take the lean path: it holds no
// retry (whose dead letters must be read first) and touches no row twice
// (coalescing reads its facts first).
func (b *batchRun) leanFits(batch []*txn.Transaction) bool {
	return len(store.RetriedIDs(batch)) == 0 && (b.s.noCoalesce || !repeats(batch))
}

// leanHead returns the statements that open the lean path's pipeline: the
// transaction's start, the fencing token recorded and checked, and the
// check that no transaction of the batch was dead-lettered before. A
// transaction applied before is caught by spool_applied's key.
func (b *batchRun) leanHead(batch []*txn.Transaction) ([]stmt, error) {
	list, err := batchIDs(batch)
	if err != nil {
		return nil, err
	}
	head := []stmt{{sql: sqlBegin, op: -1}}
	if log, token, fenced := b.fence(); fenced {
		head = append(head, stmt{sql: sqlFence, args: []any{log, token}, op: -1}, stmt{sql: sqlFenced, args: []any{log, token}, op: -1})
	}
	return append(head, stmt{sql: sqlDeadBefore, args: []any{list}, op: -1}), nil
}

// leanFailure is the error of a fast path whose pipeline stmts failed at
// res.at, after a head of n statements (0 unless the path was lean):
// fenced out, a transaction run before (the fast path runs again with its
// lookup), or a permanent failure of the batch (the slow path).
func (b *batchRun) leanFailure(res sendResult, stmts []stmt, n int) error {
	var pe *pgconn.PgError
	switch {
	case res.at < n && stmts[res.at].sql == sqlFenced:
		log, token, _ := b.fence()
		return fmt.Errorf("log %q, token %d: %w", log, token, store.ErrFenced)
	case res.at < n:
		return errLookupFirst // sqlDeadBefore, or the start itself
	case n > 0 && res.at == n && n < len(stmts) && stmts[n].sql == sqlRecordApplied && errors.As(res.err, &pe) && pe.Code == pgerrcode.UniqueViolation:
		return errLookupFirst // spool_applied holds one of the ids
	}
	return errSlowPath
}

// anyChecked reports whether a statement's command tag must be checked
// (an update or delete that must find its row) before the commit.
func anyChecked(stmts []stmt) bool {
	for _, st := range stmts {
		if st.check != 0 {
			return true
		}
	}
	return false
}

// runSlow runs each transaction of the batch in a savepoint of its own.
func (b *batchRun) runSlow(ctx context.Context, batch []*txn.Transaction) ([]store.Outcome, error) {
	out := make([]store.Outcome, len(batch))
	for i, t := range batch {
		v, reason := b.judge(t, &out[i])
		switch v {
		case duplicate, failedBefore:
			continue
		case refused:
			if err := b.deadLetter(ctx, t, reason, ""); err != nil {
				return nil, err
			}
			continue
		case superseded:
			sts, err := supersededStmts(t, reason)
			if err != nil {
				return nil, err
			}
			if _, err := b.sendAll(ctx, sts); err != nil {
				return nil, fmt.Errorf("record superseded retry: %w", err)
			}
			continue
		}
		ops, fail, err := b.plan(ctx, t)
		if err != nil {
			return nil, err
		}
		if out[i], err = b.runOne(ctx, t, ops, fail); err != nil {
			return nil, fmt.Errorf("transaction %s: %w", t.ID, err)
		}
	}
	return out, nil
}

// runOne runs one transaction of the slow path in a savepoint: its id into
// spool_applied first, then its operations, in one pipeline. If fail is set
// the operations are those before the one that cannot run, and the
// transaction fails with fail once they have run.
func (b *batchRun) runOne(ctx context.Context, t *txn.Transaction, ops []stmt, fail *store.ApplyError) (store.Outcome, error) {
	body := append([]stmt{{sql: sqlMarkAppliedOne, args: []any{t.ID}, check: checkCount, n: 1, op: -1}}, ops...)
	if fail == nil {
		body = append(body, markRetried(t)...)
	}
	head := []stmt{{sql: sqlSavepoint, op: -1}}
	if b.held {
		head = append([]stmt{{sql: sqlRelease, op: -1}}, head...)
	}
	// A statement not yet prepared is prepared in a round trip of its own
	// before the pipeline runs, and a failure there aborts the database
	// transaction: the savepoint must be taken before, or it would not
	// exist to roll back to.
	if !b.cached(body) {
		if _, err := b.sendAll(ctx, head); err != nil {
			return store.Outcome{}, err
		}
		head = nil
	}
	b.held = true
	res, err := b.send(ctx, append(head, body...))
	if err != nil {
		return store.Outcome{}, err
	}
	if res.at < 0 {
		if fail != nil {
			return b.fail(ctx, t, fail)
		}
		b.applied[t.ID] = true
		return store.Outcome{}, nil
	}
	var pe pgx.ErrPreprocessingBatch
	if res.err != nil && errors.As(res.err, &pe) {
		if len(head) > 0 {
			// A statement had left the statement cache: the savepoint did not
			// run, so there is none of this transaction's to go back to. Run
			// the slow path again, taking every savepoint in a round trip of
			// its own.
			return store.Outcome{}, errUncached
		}
		// Preparing a statement failed before any ran: the first operation
		// with that statement is the one that fails, once those before it
		// have run. Run them again without it.
		if err := b.rollbackTo(ctx); err != nil {
			return store.Outcome{}, err
		}
		for k, op := range ops {
			if op.sql == pe.SQL() {
				return b.runOne(ctx, t, ops[:k], b.applyError(t, op.op, res.err))
			}
		}
		return store.Outcome{}, fmt.Errorf("prepare: %w", res.err)
	}
	at := res.at - len(head)
	if at < 0 {
		return store.Outcome{}, fmt.Errorf("savepoint: %w", res.err)
	}
	st := body[at]
	switch {
	case at == 0 && res.err == nil: // another applier recorded it first
		if err := b.rollbackTo(ctx); err != nil {
			return store.Outcome{}, err
		}
		b.applied[t.ID] = true
		return store.Outcome{Duplicate: true}, nil
	case st.op < 0:
		return store.Outcome{}, fmt.Errorf("record applied: %w", res.err)
	case res.err == nil:
		op := t.Operations[st.op]
		return b.fail(ctx, t, &store.ApplyError{Op: st.op, Table: op.Table,
			Msg: fmt.Sprintf("%s of %s: %v", op.Op, op.ID, store.ErrMissingRow), Err: store.ErrMissingRow})
	}
	return b.fail(ctx, t, b.applyError(t, st.op, res.err))
}

// applyError is the permanent error of operation i of t.
func (b *batchRun) applyError(t *txn.Transaction, i int, err error) *store.ApplyError {
	code, _ := classify(err)
	if undefinedObject(err) {
		b.s.stale.Store(true)
	}
	msg := err.Error()
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg = pe.Message
		if pe.Detail != "" {
			msg += ": " + pe.Detail
		}
	}
	return &store.ApplyError{Op: i, Table: t.Operations[i].Table, Code: code, Msg: msg, Err: err}
}

// fail rolls t back to its savepoint and dead-letters it.
func (b *batchRun) fail(ctx context.Context, t *txn.Transaction, ae *store.ApplyError) (store.Outcome, error) {
	if err := b.rollbackTo(ctx); err != nil {
		return store.Outcome{}, err
	}
	if err := b.deadLetter(ctx, t, ae, ae.Code); err != nil {
		return store.Outcome{}, err
	}
	b.failed(t, ae)
	return store.Outcome{Err: ae}, nil
}

// rollbackTo undoes the transaction running since the savepoint. The
// savepoint stays, and the next transaction releases it (with what was
// done after it, a dead letter). It runs on its own: in an aborted
// transaction PostgreSQL parses nothing but ROLLBACK (TO), so it cannot
// share a pipeline that prepares other statements.
func (b *batchRun) rollbackTo(ctx context.Context) error {
	if _, err := run(ctx, b.c, sqlRollbackTo); err != nil {
		return fmt.Errorf("roll back to savepoint: %w", err)
	}
	b.held = true
	return nil
}

// cached reports whether every statement ran on the connection in this
// call already, and so is in its statement cache: a pipeline of them runs
// without a preparing round trip.
func (b *batchRun) cached(stmts []stmt) bool {
	if b.ran == nil {
		return false
	}
	for _, st := range stmts {
		if !b.ran[st.sql] {
			return false
		}
	}
	return true
}

func (b *batchRun) failed(t *txn.Transaction, err error) {
	if b.gate != nil {
		b.gate.Failed(t, err)
	}
}

// sendResult is the fate of a pipeline: at is the index of the first
// statement that failed permanently (err is its error) or whose command tag
// failed its check (err is nil); -1 if none did.
type sendResult struct {
	at  int
	err error
}

// send runs stmts in one pipeline and checks their command tags. A
// transient failure is the returned error.
func (b *batchRun) send(ctx context.Context, stmts []stmt) (sendResult, error) {
	if len(stmts) == 0 {
		return sendResult{at: -1}, nil
	}
	return b.read(ctx, b.c.SendBatch(ctx, batchOf(stmts)), stmts)
}

func batchOf(stmts []stmt) *pgx.Batch {
	pb := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(stmts))}
	for _, st := range stmts {
		pb.Queue(st.sql, st.args...)
	}
	return pb
}

// read reads the results of the pipeline of stmts sent as br, and closes
// it.
func (b *batchRun) read(ctx context.Context, br pgx.BatchResults, stmts []stmt) (sendResult, error) {
	return b.settleResults(ctx, br, stmts, results(br, stmts))
}

// results reads the results of stmts, the first statements of the
// pipeline br, up to the first that failed or failed its check.
func results(br pgx.BatchResults, stmts []stmt) sendResult {
	for i, st := range stmts {
		tag, err := br.Exec()
		if err != nil {
			return sendResult{at: i, err: err}
		}
		if n := tag.RowsAffected(); (st.check == checkRow && n == 0) || (st.check == checkCount && n != st.n) {
			return sendResult{at: i}
		}
	}
	return sendResult{at: -1}
}

// settleResults closes br, whose statements stmts gave res, and notes
// what went into the statement cache; a transient failure is the returned
// error.
func (b *batchRun) settleResults(ctx context.Context, br pgx.BatchResults, stmts []stmt, res sendResult) (sendResult, error) {
	closeErr := br.Close()
	if res.at < 0 && closeErr != nil {
		res = sendResult{at: len(stmts) - 1, err: closeErr}
	}
	b.noteCache(stmts, res.err == nil && closeErr == nil)
	if res.err != nil {
		if _, permanent := classify(res.err); !permanent || ctx.Err() != nil {
			return sendResult{}, res.err
		}
	}
	return res, nil
}

// noteCache keeps track of which statements are in the connection's
// statement cache: pgx puts every statement of a pipeline there, and takes
// them all out again when any of them failed.
func (b *batchRun) noteCache(stmts []stmt, ok bool) {
	if b.ran == nil {
		return
	}
	for _, st := range stmts {
		if ok {
			b.ran[st.sql] = true
		} else {
			delete(b.ran, st.sql)
		}
	}
}

// sendAndCommit runs stmts, none of which has a check, then COMMIT and
// the commit's position, in one pipeline. If a statement fails, the
// database skips the rest of the pipeline, the commit with it, and the
// transaction is left to roll back. A commit refused for good (a deferred
// constraint) is reported at len(stmts), past the statements.
func (b *batchRun) sendAndCommit(ctx context.Context, stmts []stmt) (sendResult, txn.LSN, error) {
	pb := batchOf(stmts)
	pb.Queue(sqlCommit)
	pb.Queue(sqlCommitLSN)
	br := b.c.SendBatch(ctx, pb)
	res := results(br, stmts)
	var lsn txn.LSN
	if res.at < 0 {
		var err error
		if lsn, err = readCommit(br); err != nil {
			res = sendResult{at: len(stmts), err: err}
		}
	}
	res, err := b.settleResults(ctx, br, stmts, res)
	if err != nil {
		return sendResult{}, 0, err
	}
	return res, lsn, nil
}

// sendAll runs spool's own statements, every failure of which fails the
// batch.
func (b *batchRun) sendAll(ctx context.Context, stmts []stmt) (sendResult, error) {
	res, err := b.send(ctx, stmts)
	if err == nil && res.at >= 0 {
		err = res.err
		if err == nil {
			err = fmt.Errorf("statement %d touched an unexpected number of rows", res.at)
		}
	}
	return res, err
}

// deadLetter records t as failed with cause, in the batch's transaction.
func (b *batchRun) deadLetter(ctx context.Context, t *txn.Transaction, cause error, code string) error {
	st, err := deadLetterStmt(t, cause, code)
	if err != nil {
		return err
	}
	if _, err := b.sendAll(ctx, append([]stmt{st}, markRetried(t)...)); err != nil {
		return fmt.Errorf("record dead letter: %w", err)
	}
	b.dead[t.ID] = cause // a second copy in this batch meets the same fate
	return nil
}

func deadLetterStmt(t *txn.Transaction, cause error, code string) (stmt, error) {
	body, err := json.Marshal(t)
	if err != nil {
		return stmt{}, fmt.Errorf("encode dead letter: %w", err)
	}
	var c, retryOf any
	if code != "" {
		c = code
	}
	if txn.ValidID(t.RetryOf) {
		retryOf = t.RetryOf
	}
	// Text cannot hold a NUL or invalid UTF-8; the failure may be about one.
	msg := strings.ToValidUTF8(strings.ReplaceAll(cause.Error(), "\x00", "\ufffd"), "\ufffd")
	return stmt{sql: sqlDeadLetter, args: []any{t.ID, string(jsonbSafe(body)), msg, c, store.TableList(t), retryOf}, op: -1}, nil
}

// supersededStmts dead-letter the superseded retry t, dropped at once: it
// leaves its dead letter alone, which another transaction retried or
// someone dropped.
func supersededStmts(t *txn.Transaction, reason error) ([]stmt, error) {
	st, err := deadLetterStmt(t, reason, store.CodeSuperseded)
	if err != nil {
		return nil, err
	}
	return []stmt{st, {sql: sqlDropSuperseded, args: []any{t.ID, store.DroppedBySpool}, check: checkCount, n: 1, op: -1}}, nil
}

// markRetried returns the statement that links the dead letter t retries
// to t, if t is a retry.
func markRetried(t *txn.Transaction) []stmt {
	if !txn.ValidID(t.RetryOf) {
		return nil
	}
	return []stmt{{sql: sqlMarkRetried, args: []any{t.ID, t.RetryOf}, op: -1}}
}

// jsonbSafe replaces the escape \u0000 in JSON text, which jsonb cannot
// hold, by \ufffd, so that a transaction whose text held a NUL (which is
// why it failed) can still be dead-lettered.
func jsonbSafe(body []byte) []byte {
	const nul = `\u0000`
	var out []byte
	for i := 0; i < len(body); i++ {
		if body[i] == '\\' && i+1 < len(body) {
			if string(body[i:min(i+len(nul), len(body))]) == nul {
				if out == nil {
					out = append(make([]byte, 0, len(body)), body[:i]...)
				}
				out = append(out, `\ufffd`...)
				i += len(nul) - 1
				continue
			}
			if out != nil {
				out = append(out, body[i], body[i+1])
			}
			i++ // an escaped character, perhaps a backslash
			continue
		}
		if out != nil {
			out = append(out, body[i])
		}
	}
	if out == nil {
		return body
	}
	return out
}

// priorFailure is the Outcome.Err of a transaction that an earlier run had
// dead-lettered already: the batch was replayed after its log ack was lost.
type priorFailure struct {
	id, msg string
}

func (e *priorFailure) Error() string {
	return fmt.Sprintf("transaction %s was dead-lettered earlier: %s", e.id, e.msg)
}
