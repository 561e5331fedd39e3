package postgres

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// The statements of dead letters.
const (
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
	sqlMarkRetried = `update spool_dead_letters set retried_as = $1, retried_by = $3 where txn_id = $2`
	// sqlDropSuperseded drops the dead letter of a superseded retry.
	sqlDropSuperseded = `update spool_dead_letters set dropped_at = now(), dropped_by = $2 where txn_id = $1`
)

// verdict is what the gate and earlier runs say of a transaction before it
// runs.
type verdict int

const (
	runIt verdict = iota
	duplicate
	failedBefore // dead-lettered earlier, or earlier in this batch
	refused
	superseded // a retry of a dead letter retried or dropped already
)

// judge decides the fate of each transaction of a batch before it runs,
// in log order, from what earlier runs left and what the gate says. It
// records the decisions in learned, so a second copy of a transaction in
// the batch meets the first's fate.
type judge struct {
	gate store.Gate
	*learned
}

// judge consults earlier runs and the gate about t and fills in its
// outcome, but for a refusal, which the caller settles (refuse) or gives
// way on; the returned error is the reason of a refusal or supersession.
func (j *judge) judge(t *txn.Transaction, o *store.Outcome) (verdict, error) {
	if j.applied[t.ID] {
		o.Duplicate = true
		return duplicate, nil
	}
	if prior := j.dead[t.ID]; prior != nil {
		// Dead-lettered by an earlier run whose log ack was lost: its fate is
		// decided; running it again could apply what was reported failed.
		j.failed(t, prior)
		o.Err = prior
		return failedBefore, nil
	}
	if reason := j.retries.Admit(t); reason != nil {
		// Not a failure of t's operations: nothing is poisoned.
		j.dead[t.ID] = reason
		o.Err = reason
		return superseded, reason
	}
	if j.gate != nil {
		if reason := j.gate.Admit(t); reason != nil {
			return refused, reason
		}
	}
	return runIt, nil
}

// refuse settles a refusal: t fails unrun, and the gate is told.
func (j *judge) refuse(t *txn.Transaction, reason error, o *store.Outcome) {
	j.dead[t.ID] = reason
	j.failed(t, reason)
	o.Err = reason
}

// failed tells the gate that t failed.
func (j *judge) failed(t *txn.Transaction, err error) {
	if j.gate != nil {
		j.gate.Failed(t, err)
	}
}

// deadLetterStmts record t as failed with cause (and code, its SQLSTATE
// or ""), linked to the dead letter it retries.
func deadLetterStmts(t *txn.Transaction, cause error, code string) ([]stmt, error) {
	st, err := deadLetterStmt(t, cause, code)
	if err != nil {
		return nil, err
	}
	return append([]stmt{st}, markRetried(t)...), nil
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
	return []stmt{{sql: sqlMarkRetried, args: []any{t.ID, t.RetryOf, t.Principal}, op: -1}}
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
