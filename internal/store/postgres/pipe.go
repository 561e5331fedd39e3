package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// pipe is the core the executors share: the attempt's connection, and
// which statements this ApplyBatch call ran on it, so are in its
// statement cache (nil: rely on no cache).
type pipe struct {
	c   *pgx.Conn
	ran map[string]bool
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
func (p *pipe) send(ctx context.Context, stmts []stmt) (sendResult, error) {
	if len(stmts) == 0 {
		return sendResult{at: -1}, nil
	}
	br := p.c.SendBatch(ctx, batchOf(stmts))
	return p.settle(ctx, br, stmts, results(br, stmts))
}

// sendAll runs spool's own statements, every failure of which fails the
// batch.
func (p *pipe) sendAll(ctx context.Context, stmts []stmt) error {
	res, err := p.send(ctx, stmts)
	if err == nil && res.at >= 0 {
		err = res.err
		if err == nil {
			err = fmt.Errorf("statement %d touched an unexpected number of rows", res.at)
		}
	}
	return err
}

// sendAndCommit runs stmts, none of which has a check, then COMMIT and
// the commit's position, in one pipeline. If a statement fails, the
// database skips the rest of the pipeline, the commit with it, and the
// transaction is left to roll back. A commit refused for good (a deferred
// constraint) is reported at len(stmts), past the statements.
func (p *pipe) sendAndCommit(ctx context.Context, stmts []stmt) (sendResult, txn.LSN, error) {
	pb := batchOf(stmts)
	pb.Queue(sqlCommit)
	pb.Queue(sqlCommitLSN)
	br := p.c.SendBatch(ctx, pb)
	res := results(br, stmts)
	var lsn txn.LSN
	if res.at < 0 {
		var err error
		if lsn, err = readCommit(br); err != nil {
			res = sendResult{at: len(stmts), err: err}
		}
	}
	res, err := p.settle(ctx, br, stmts, res)
	if err != nil {
		return sendResult{}, 0, err
	}
	return res, lsn, nil
}

// commit commits the attempt and returns the commit's position in the WAL,
// in one round trip. If the position cannot be read after the commit, the
// error makes the applier run the batch again, which then finds every
// transaction a duplicate and reports a later position.
func (p *pipe) commit(ctx context.Context) (txn.LSN, error) {
	br := p.c.SendBatch(ctx, batchOf([]stmt{{sql: sqlCommit}, {sql: sqlCommitLSN}}))
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

func batchOf(stmts []stmt) *pgx.Batch {
	pb := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(stmts)+2)}
	for _, st := range stmts {
		pb.Queue(st.sql, st.args...)
	}
	return pb
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

// settle closes br, whose statements stmts gave res, and notes what went
// into the statement cache; a transient failure is the returned error.
func (p *pipe) settle(ctx context.Context, br pgx.BatchResults, stmts []stmt, res sendResult) (sendResult, error) {
	closeErr := br.Close()
	if res.at < 0 && closeErr != nil {
		res = sendResult{at: len(stmts) - 1, err: closeErr}
	}
	p.noteCache(stmts, res.err == nil && closeErr == nil)
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
func (p *pipe) noteCache(stmts []stmt, ok bool) {
	if p.ran == nil {
		return
	}
	for _, st := range stmts {
		if ok {
			p.ran[st.sql] = true
		} else {
			delete(p.ran, st.sql)
		}
	}
}

// cached reports whether every statement ran on the connection in this
// call already, and so is in its statement cache: a pipeline of them runs
// without a preparing round trip.
func (p *pipe) cached(stmts []stmt) bool {
	if p.ran == nil {
		return false
	}
	for _, st := range stmts {
		if !p.ran[st.sql] {
			return false
		}
	}
	return true
}

// open sends the opening pipeline o and returns the function that reads
// its results: the connection is busy until then.
func (p *pipe) open(ctx context.Context, o opening) (finish func() (*learned, error)) {
	br := p.c.SendBatch(ctx, batchOf(o.stmts()))
	return func() (*learned, error) {
		lk, err := readOpening(br, o)
		if closeErr := br.Close(); err == nil && closeErr != nil {
			err = fmt.Errorf("look up earlier runs: %w", closeErr)
		}
		return lk, err
	}
}

// readOpening reads the results of the opening pipeline o.
func readOpening(br pgx.BatchResults, o opening) (*learned, error) {
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	if o.immediate {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("set constraints: %w", err)
		}
	}
	if o.fence.ok {
		tag, err := br.Exec()
		if err != nil {
			return nil, fmt.Errorf("check fencing token: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil, o.fence.fenced()
		}
	}
	lk := &learned{applied: make(map[string]bool), dead: make(map[string]error), retries: store.RetryTargets{}}
	if err := lk.readLookup(br); err != nil {
		return nil, err
	}
	if o.retried != "" {
		rows, err := br.Query()
		if err != nil {
			return nil, fmt.Errorf("look up retried dead letters: %w", err)
		}
		err = lk.retries.Read(rows)
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	if o.facts {
		var err error
		if lk.facts, err = readMergeFacts(br); err != nil {
			return nil, err
		}
	}
	return lk, nil
}

// readLookup reads the result of sqlLookup.
func (lk *learned) readLookup(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("look up earlier runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var msg *string
		if err := rows.Scan(&id, &msg); err != nil {
			return fmt.Errorf("look up earlier runs: %w", err)
		}
		if msg != nil {
			lk.dead[id] = &priorFailure{id: id, msg: *msg}
		} else {
			lk.applied[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up earlier runs: %w", err)
	}
	return nil
}

// setLSN gives every outcome the batch's commit position.
func setLSN(out []store.Outcome, lsn txn.LSN) []store.Outcome {
	for i := range out {
		out[i].LSN = lsn
	}
	return out
}
