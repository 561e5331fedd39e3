package postgres

import (
	"context"

	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// leanExec runs a batch in one pipeline: leanHead in place of the lookup,
// the planned statements, and the commit when nothing needs checking
// first. A batch it does not fit (leanFits) or cannot settle (a
// transaction run before, one the gate refuses) gives way to fastExec
// (errLookupFirst); one that fails permanently, to slowExec (errSlowPath).
type leanExec struct {
	pipe
	b          *batchRun
	gate       store.Gate
	coalescing bool
}

func (e *leanExec) run(ctx context.Context, batch []*txn.Transaction) ([]store.Outcome, error) {
	if !leanFits(batch, e.coalescing) {
		return nil, errLookupFirst
	}
	f := fenceOf(e.gate)
	head, err := leanHead(batch, f)
	if err != nil {
		return nil, err
	}
	built, err := e.b.buildAll(ctx, batch)
	if err != nil {
		return nil, err
	}
	p, err := planFast(batch, built, nil, e.gate, nil)
	if err != nil {
		return nil, err
	}
	stmts := p.pipeline(head)
	return e.finish(ctx, p.out, stmts, func(res sendResult) error { return leanFailure(res, stmts, len(head), f) })
}

// fastExec runs a batch in two pipelines. The first (opening) begins the
// database transaction, records the fencing token and looks up which
// transactions earlier runs applied or dead-lettered (and, for a batch
// touching a row twice, the merge facts); the operations are turned into
// statements while the database works on it. The second is the plan
// (planFast), with the commit when nothing needs checking first. Any
// permanent failure gives way to slowExec (errSlowPath).
type fastExec struct {
	pipe
	b          *batchRun
	gate       store.Gate
	coalescing bool
}

func (e *fastExec) run(ctx context.Context, batch []*txn.Transaction) ([]store.Outcome, error) {
	o, err := planOpening(batch, e.gate, false, e.coalescing)
	if err != nil {
		return nil, err
	}
	finish := e.open(ctx, o)
	var lk *learned
	e.b.busy = func() (err error) { lk, err = finish(); return err } // the connection is busy with it
	built, err := e.b.buildAll(ctx, batch)
	if settleErr := e.b.settle(); err == nil {
		err = settleErr
	}
	if err != nil {
		return nil, err
	}
	var rules func(string) *store.MergeRules
	if lk.facts != nil {
		rules = mergeRules(e.b.s.cat.Load(), lk.facts)
	}
	p, err := planFast(batch, built, lk, e.gate, rules)
	if err != nil {
		return nil, err
	}
	if err := p.buildMerged(ctx, e.b); err != nil {
		return nil, err
	}
	return e.finish(ctx, p.out, p.pipeline(nil), func(sendResult) error { return errSlowPath })
}

// finish sends the fast path's second pipeline stmts and commits: in the
// same pipeline, a round trip less, when no statement's command tag must
// be checked first. failed is the error of a statement's failure.
func (p *pipe) finish(ctx context.Context, out []store.Outcome, stmts []stmt, failed func(sendResult) error) ([]store.Outcome, error) {
	if !anyChecked(stmts) {
		res, lsn, err := p.sendAndCommit(ctx, stmts)
		if err != nil {
			return nil, err
		}
		if res.at >= 0 {
			return nil, failed(res)
		}
		return setLSN(out, lsn), nil
	}
	res, err := p.send(ctx, stmts)
	if err != nil {
		return nil, err
	}
	if res.at >= 0 {
		return nil, failed(res)
	}
	lsn, err := p.commit(ctx)
	if err != nil {
		if _, permanent := classify(err); permanent {
			return nil, errSlowPath // a deferred constraint; the slow path checks them at once
		}
		return nil, err
	}
	return setLSN(out, lsn), nil
}
