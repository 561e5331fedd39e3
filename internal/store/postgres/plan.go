package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// The planner: pure functions from a batch, the statements of its
// operations (ops.go) and what the first round trip learned, to the
// statements an executor sends. Nothing here touches a connection.

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
	// sqlRetryTargets reads the dead letters the batch's retries name,
	// and locks them: a drop waits for the batch, and then finds them
	// retried (see store.RetryTargets).
	sqlRetryTargets = `select txn_id::text, coalesce(retried_as::text, ''), dropped_at is not null
		from spool_dead_letters where txn_id = any($1::uuid[]) for update`
	// sqlFenced and sqlDeadBefore are the checks of the lean path (see
	// leanHead) as statements: each fails with a division by zero where
	// the lookup would have read, respectively, a newer fencing token than
	// ours, and a transaction of the batch that an earlier run
	// dead-lettered.
	sqlFenced     = `select 1 / (select count(*) from spool_fence where log = $1 and token = $2)::int`
	sqlDeadBefore = `select 1 / (case when exists (select 1 from spool_dead_letters where txn_id = any($1::uuid[])) then 0 else 1 end)`
	// sqlCommitLSN is the commit's position in the WAL, or past it: the
	// insert position is after every record inserted so far, the commit
	// record included, whatever synchronous_commit says.
	sqlCommitLSN  = `select pg_current_wal_insert_lsn()::text`
	sqlSavepoint  = `savepoint spool_tx`
	sqlRelease    = `release savepoint spool_tx`
	sqlRollbackTo = `rollback to savepoint spool_tx`
	sqlCommit     = `commit`
)

// errSlowPath says the fast path met a permanent failure: the attempt is
// rolled back and the batch runs again with a savepoint per transaction.
var errSlowPath = errors.New("a transaction of the batch failed permanently")

// errLookupFirst says the lean path cannot settle the batch: it met a
// transaction an earlier run applied or dead-lettered, or one the gate
// refuses. The attempt is rolled back, and the fast path runs, looking up
// earlier runs first.
var errLookupFirst = errors.New("the batch needs its earlier runs looked up first")

// learned is what the lookup of an attempt's first round trip read: the
// transactions of the batch earlier runs applied or dead-lettered, the dead
// letters its retries name, and the merge facts (nil unless the batch
// touches a row twice and coalescing is on).
type learned struct {
	applied map[string]bool
	dead    map[string]error
	retries store.RetryTargets
	facts   map[string]mergeFact
}

// opening is the first pipeline of an attempt that looks up earlier runs:
// begin, SET CONSTRAINTS ALL IMMEDIATE if immediate, the fencing token
// recorded, the lookup, the retried dead letters if any, the merge facts
// if asked for. readOpening reads its results in that order.
type opening struct {
	immediate bool
	fence     fence
	ids       string // array literal of the batch's ids
	retried   string // array literal of the dead letters retried; "" if none
	facts     bool
}

// fence is the lease of a batch; ok is false when there is none to check.
type fence struct {
	log   string
	token int64
	ok    bool
}

func fenceOf(gate store.Gate) fence {
	if gate == nil {
		return fence{}
	}
	log, token := gate.Fence()
	return fence{log: log, token: token, ok: token != 0}
}

// fenced is store.ErrFenced for this lease.
func (f fence) fenced() error {
	return fmt.Errorf("log %q, token %d: %w", f.log, f.token, store.ErrFenced)
}

// planOpening plans the first pipeline of a batch; facts asks for the
// merge facts, which only the fast path reads and only a batch touching a
// row twice needs.
func planOpening(batch []*txn.Transaction, gate store.Gate, immediate, facts bool) (opening, error) {
	ids, err := batchIDs(batch)
	if err != nil {
		return opening{}, err
	}
	retried, err := retriedList(batch)
	if err != nil {
		return opening{}, err
	}
	return opening{immediate: immediate, fence: fenceOf(gate), ids: ids, retried: retried, facts: facts && repeats(batch)}, nil
}

func (o opening) stmts() []stmt {
	sts := []stmt{{sql: sqlBegin, op: -1}}
	if o.immediate {
		sts = append(sts, stmt{sql: sqlImmediate, op: -1})
	}
	if o.fence.ok {
		sts = append(sts, stmt{sql: sqlFence, args: []any{o.fence.log, o.fence.token}, op: -1})
	}
	sts = append(sts, stmt{sql: sqlLookup, args: []any{o.ids}, op: -1})
	if o.retried != "" {
		sts = append(sts, stmt{sql: sqlRetryTargets, args: []any{o.retried}, op: -1})
	}
	if o.facts {
		sts = append(sts, stmt{sql: sqlMergeFacts, op: -1})
	}
	return sts
}

// leanFits reports whether the batch can take the lean path: it holds no
// retry (whose dead letters must be read first) and, with coalescing on,
// touches no row twice (coalescing reads its facts first).
func leanFits(batch []*txn.Transaction, coalescing bool) bool {
	return len(store.RetriedIDs(batch)) == 0 && (!coalescing || !repeats(batch))
}

// leanHead returns the statements that open the lean path's pipeline in
// place of the lookup: the transaction's start, the fencing token
// recorded and checked, and the check that no transaction of the batch
// was dead-lettered before. A transaction applied before is caught by
// spool_applied's key.
func leanHead(batch []*txn.Transaction, f fence) ([]stmt, error) {
	list, err := batchIDs(batch)
	if err != nil {
		return nil, err
	}
	head := []stmt{{sql: sqlBegin, op: -1}}
	if f.ok {
		head = append(head, stmt{sql: sqlFence, args: []any{f.log, f.token}, op: -1}, stmt{sql: sqlFenced, args: []any{f.log, f.token}, op: -1})
	}
	return append(head, stmt{sql: sqlDeadBefore, args: []any{list}, op: -1}), nil
}

// leanFailure is the error of a lean pipeline stmts that failed at res.at
// after a head of n statements: fenced out, a transaction run before (the
// fast path runs with its lookup), or a permanent failure of the batch
// (the slow path).
func leanFailure(res sendResult, stmts []stmt, n int, f fence) error {
	var pe *pgconn.PgError
	switch {
	case res.at < n && stmts[res.at].sql == sqlFenced:
		return f.fenced()
	case res.at < n:
		return errLookupFirst // sqlDeadBefore, or the start itself
	case res.at == n && n < len(stmts) && stmts[n].sql == sqlRecordApplied && errors.As(res.err, &pe) && pe.Code == pgerrcode.UniqueViolation:
		return errLookupFirst // spool_applied holds one of the ids
	}
	return errSlowPath
}

// fastPlan is the second pipeline of the fast path and the outcomes the
// batch has once it commits.
type fastPlan struct {
	out []store.Outcome
	// body holds the statements of the transactions to run, in log order,
	// coalesced, then spool's own: dead letters and retry links.
	body []stmt
	// ids is the array literal of the transactions to record in
	// spool_applied, "" if none.
	ids string
	// merges are the operations of body that coalescing merged: their
	// statements must be built (buildMerged) before the pipeline is.
	merges []mergedOp
}

// mergedOp is operation op of its transaction, merged with later
// operations on its row into merged; body[at] is to hold its statement.
type mergedOp struct {
	at, op int
	merged txn.Operation
}

// planFast plans the fast path's second pipeline. built holds the
// statements of each transaction's operations (ops.go), nil for a second
// copy of one; lk is what the lookup read, nil on the lean path, where a
// refusal of the gate gives way to the lookup (errLookupFirst): the
// transaction may have run before, which the gate is never asked about.
// The gate is asked about each transaction to run, in log order, and told
// of each refusal. rules says which tables writes may be coalesced in;
// nil coalesces nothing.
func planFast(batch []*txn.Transaction, built [][]stmt, lk *learned, gate store.Gate, rules func(string) *store.MergeRules) (*fastPlan, error) {
	lean := lk == nil
	if lean {
		lk = &learned{applied: map[string]bool{}, dead: map[string]error{}, retries: store.RetryTargets{}}
	}
	j := &judge{gate: gate, learned: lk}
	p := &fastPlan{out: make([]store.Outcome, len(batch))}
	var (
		ops   []txn.Operation // of the transactions to run, in log order
		opSts []stmt          // the statement of each of ops
		own   []stmt          // spool's: dead letters of refusals, retry links
		ids   []any
	)
	for i, t := range batch {
		v, reason := j.judge(t, &p.out[i])
		switch v {
		case duplicate, failedBefore:
			continue
		case refused:
			if lean {
				return nil, errLookupFirst
			}
			j.refuse(t, reason, &p.out[i])
			sts, err := deadLetterStmts(t, reason, "")
			if err != nil {
				return nil, err
			}
			own = append(own, sts...)
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
		opSts = append(opSts, built[i]...)
		own = append(own, markRetried(t)...)
		lk.applied[t.ID] = true
		ids = append(ids, t.ID)
	}
	// Only transactions that run contribute operations to the coalesced
	// plan: duplicates and refusals are settled above.
	p.body, p.merges = coalesce(ops, opSts, rules)
	p.body = append(p.body, own...)
	if len(ids) > 0 {
		var err error
		if p.ids, err = arrayLiteral(schema.UUID, ids); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// pipeline is the fast path's second pipeline: head, then the ids
// recorded, then body with neighbouring inserts of one shape merged. The
// statements of p.merges must be built by now.
func (p *fastPlan) pipeline(head []stmt) []stmt {
	if len(p.merges) > 0 {
		panic("postgres: the fast path's merged statements are not built")
	}
	stmts := p.body
	if p.ids != "" {
		// It records every id or fails: a conflict (a unique violation)
		// means another applier recorded one of the ids since the lookup,
		// and the slow path finds out which.
		stmts = append([]stmt{{sql: sqlRecordApplied, args: []any{p.ids}, op: -1}}, stmts...)
	}
	return append(head, merge(stmts)...)
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

// slowHead opens a transaction of the slow path: its savepoint, after
// the release of the last one if it is still held.
func slowHead(held bool) []stmt {
	if held {
		return []stmt{{sql: sqlRelease, op: -1}, {sql: sqlSavepoint, op: -1}}
	}
	return []stmt{{sql: sqlSavepoint, op: -1}}
}

// slowBody is a transaction of the slow path: its id into spool_applied
// first (it must record one row; none means another applier did), then
// ops, then, unless the transaction fails after ops, the link to the dead
// letter it retries.
func slowBody(t *txn.Transaction, ops []stmt, fails bool) []stmt {
	body := append([]stmt{{sql: sqlMarkAppliedOne, args: []any{t.ID}, check: checkCount, n: 1, op: -1}}, ops...)
	if !fails {
		body = append(body, markRetried(t)...)
	}
	return body
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
