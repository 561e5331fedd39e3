package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// errUncached says the slow path met a statement it took for prepared
// that was not: the attempt is rolled back and runs again without relying
// on the statement cache.
var errUncached = errors.New("a statement left the statement cache")

// slowExec runs a batch with SET CONSTRAINTS ALL IMMEDIATE, each
// transaction in a savepoint of its own: one that fails is rolled back
// alone and dead-lettered in the same database transaction, and the gate
// hears of it before it is asked about the next transaction.
type slowExec struct {
	pipe
	b    *batchRun
	gate store.Gate
	j    *judge
	// held is set while the savepoint of the last transaction run is
	// still open.
	held bool
}

func (e *slowExec) run(ctx context.Context, batch []*txn.Transaction) ([]store.Outcome, error) {
	o, err := planOpening(batch, e.gate, true, false)
	if err != nil {
		return nil, err
	}
	lk, err := e.open(ctx, o)()
	if err != nil {
		return nil, err
	}
	e.j = &judge{gate: e.gate, learned: lk}
	out := make([]store.Outcome, len(batch))
	for i, t := range batch {
		v, reason := e.j.judge(t, &out[i])
		switch v {
		case duplicate, failedBefore:
			continue
		case refused:
			e.j.refuse(t, reason, &out[i])
			if err := e.deadLetter(ctx, t, reason, ""); err != nil {
				return nil, err
			}
			continue
		case superseded:
			sts, err := supersededStmts(t, reason)
			if err != nil {
				return nil, err
			}
			if err := e.sendAll(ctx, sts); err != nil {
				return nil, fmt.Errorf("record superseded retry: %w", err)
			}
			continue
		}
		ops, fail, err := e.b.plan(ctx, t)
		if err != nil {
			return nil, err
		}
		if out[i], err = e.runOne(ctx, t, ops, fail); err != nil {
			return nil, fmt.Errorf("transaction %s: %w", t.ID, err)
		}
	}
	lsn, err := e.commit(ctx)
	if err != nil {
		return nil, err
	}
	return setLSN(out, lsn), nil
}

// runOne runs one transaction in a savepoint: its id into spool_applied
// first, then its operations, in one pipeline. If fail is set the
// operations are those before the one that cannot run, and the
// transaction fails with fail once they have run.
func (e *slowExec) runOne(ctx context.Context, t *txn.Transaction, ops []stmt, fail *store.ApplyError) (store.Outcome, error) {
	body := slowBody(t, ops, fail != nil)
	head := slowHead(e.held)
	// A statement not yet prepared is prepared in a round trip of its own
	// before the pipeline runs, and a failure there aborts the database
	// transaction: the savepoint must be taken before, or it would not
	// exist to roll back to.
	if !e.cached(body) {
		if err := e.sendAll(ctx, head); err != nil {
			return store.Outcome{}, err
		}
		head = nil
	}
	e.held = true
	res, err := e.send(ctx, append(head, body...))
	if err != nil {
		return store.Outcome{}, err
	}
	if res.at < 0 {
		if fail != nil {
			return e.fail(ctx, t, fail)
		}
		e.j.applied[t.ID] = true
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
		if err := e.rollbackTo(ctx); err != nil {
			return store.Outcome{}, err
		}
		for k, op := range ops {
			if op.sql == pe.SQL() {
				return e.runOne(ctx, t, ops[:k], applyError(e.b.s, t, op.op, res.err))
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
		if err := e.rollbackTo(ctx); err != nil {
			return store.Outcome{}, err
		}
		e.j.applied[t.ID] = true
		return store.Outcome{Duplicate: true}, nil
	case st.op < 0:
		return store.Outcome{}, fmt.Errorf("record applied: %w", res.err)
	case res.err == nil:
		op := t.Operations[st.op]
		return e.fail(ctx, t, &store.ApplyError{Op: st.op, Table: op.Table,
			Msg: fmt.Sprintf("%s of %s: %v", op.Op, op.ID, store.ErrMissingRow), Err: store.ErrMissingRow})
	}
	return e.fail(ctx, t, applyError(e.b.s, t, st.op, res.err))
}

// fail rolls t back to its savepoint, dead-letters it and tells the gate.
func (e *slowExec) fail(ctx context.Context, t *txn.Transaction, ae *store.ApplyError) (store.Outcome, error) {
	if err := e.rollbackTo(ctx); err != nil {
		return store.Outcome{}, err
	}
	if err := e.deadLetter(ctx, t, ae, ae.Code); err != nil {
		return store.Outcome{}, err
	}
	e.j.failed(t, ae)
	return store.Outcome{Err: ae}, nil
}

// rollbackTo undoes the transaction running since the savepoint. The
// savepoint stays, and the next transaction releases it (with what was
// done after it, a dead letter). It runs on its own: in an aborted
// transaction PostgreSQL parses nothing but ROLLBACK (TO), so it cannot
// share a pipeline that prepares other statements.
func (e *slowExec) rollbackTo(ctx context.Context) error {
	if _, err := run(ctx, e.c, sqlRollbackTo); err != nil {
		return fmt.Errorf("roll back to savepoint: %w", err)
	}
	e.held = true
	return nil
}

// deadLetter records t as failed with cause, in the batch's transaction.
func (e *slowExec) deadLetter(ctx context.Context, t *txn.Transaction, cause error, code string) error {
	sts, err := deadLetterStmts(t, cause, code)
	if err != nil {
		return err
	}
	if err := e.sendAll(ctx, sts); err != nil {
		return fmt.Errorf("record dead letter: %w", err)
	}
	e.j.dead[t.ID] = cause // a second copy in this batch meets the same fate
	return nil
}

// applyError is the permanent error of operation i of t; one that says a
// table or column does not exist marks s's catalog stale.
func applyError(s *Store, t *txn.Transaction, i int, err error) *store.ApplyError {
	code, _ := classify(err)
	if undefinedObject(err) {
		s.stale.Store(true)
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
