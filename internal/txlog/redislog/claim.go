package redislog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/txlog"
)

// claimState is where Claim is; claimMu guards it.
type claimState struct {
	// started is set once the entries of dead consumers were taken over:
	// the first Claim of a Log does it.
	started bool
	// backlog is set while Claim still delivers the entries pending under
	// this consumer (claimed before a restart, or taken over) after cursor;
	// then it reads new entries. A failed read sets it again, so that
	// entries delivered with a lost reply are not skipped.
	backlog bool
	// cursor is the last entry Claim returned or dropped.
	cursor string
	// held are entries read for a Claim whose context ended before it
	// could return them; the next Claim returns them first.
	held []txlog.Entry
}

// takeOverBatch is how many pending entries one XAUTOCLAIM moves: large
// enough that a crashed applier's batch moves in one call or two, small
// enough that one call stays short for Redis.
const takeOverBatch = 1000

// Claim returns up to max entries, in log order. The first Claim of a Log,
// the first after each Lease.Acquire and the first after a failed read
// start over from what Redis holds: they take over the entries other
// consumers of the group claimed and left, so that they come first (on a
// log with a Lease, all of them at once: see takeOver; without one, those
// idle for MinIdle, waiting for younger ones to age); then come the
// entries pending under this consumer (claimed but not acknowledged
// before, or taken over), in stream order, from the first; then new
// ones. With none there it blocks, in reads of at most ClaimBlock, until
// an append, until ctx is done or the log closes; it never waits for more
// once one is there.
//
// On a log that has a Lease, Claim delivers only while this process holds
// it, checked in Redis in the same step as the read: otherwise it returns
// txlog.ErrNotHolder and delivers nothing.
func (l *Log) Claim(ctx context.Context, max int) ([]txlog.Entry, error) {
	if max <= 0 {
		return nil, fmt.Errorf("redislog: claim: max %d is not positive", max)
	}
	l.recent.on.Store(true)
	l.claimMu.Lock()
	defer l.claimMu.Unlock()
	c := &l.claim
	if l.restartClaim.Swap(false) {
		// A lease was acquired: this process becomes the active applier
		// (again), and another may have left entries meanwhile. Start over:
		// take over, then the backlog, which has the held entries too.
		*c = claimState{}
	}
	for {
		if l.isClosing() {
			return nil, fmt.Errorf("redislog: claim: %w", txlog.ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("redislog: claim: %w", err)
		}
		if len(c.held) > 0 {
			n := min(max, len(c.held))
			es := c.held[:n:n]
			c.held = c.held[n:]
			return es, nil
		}
		if !c.started {
			if err := l.takeOver(ctx); err != nil {
				return nil, err
			}
			c.started, c.backlog, c.cursor = true, true, "0"
		}
		es, err := l.read(ctx, max)
		if err != nil {
			return nil, err
		}
		if len(es) == 0 {
			continue
		}
		if ctx.Err() != nil {
			// Delivered to this consumer: keep them for the next Claim
			// rather than lose their place in the order.
			c.held = es
			continue
		}
		if err := l.waitReplicas(ctx); err != nil {
			// An entry a replica may not have could be gone after a
			// failover, its write refused: it must not reach the
			// database. The next Claim starts over and delivers these
			// again, once the replicas have them.
			l.restartClaim.Store(true)
			return nil, l.fail("claim", err)
		}
		return es, nil
	}
}

// read delivers entries to this consumer (see deliver): from the backlog
// while there is one, otherwise new ones, waiting for an append at most
// ClaimBlock (less if ctx has an earlier deadline). It returns no entries
// and no error when it found none. The caller holds claimMu.
func (l *Log) read(ctx context.Context, limit int) ([]txlog.Entry, error) {
	c := &l.claim
	holder, err := l.holderValue()
	if err != nil {
		return nil, err
	}
	start := ">"
	if c.backlog {
		start = c.cursor
	}
	msgs, last, err := l.deliver(ctx, holder, limit, start)
	switch {
	case errors.Is(err, txlog.ErrNotHolder):
		return nil, fmt.Errorf("redislog: claim: %w", err)
	case redis.HasErrorPrefix(err, "NOGROUP"):
		// The stream or its group is gone: deleted by hand, or a Redis
		// without persistence restarted. Nothing to deliver; make the
		// group again so that appends from now on are.
		l.logger.Error("redislog: the log's consumer group is missing (stream deleted, or Redis lost its data?); creating it again", "stream", l.keys.stream)
		if err := l.createGroup(ctx); err != nil {
			return nil, l.fail("claim", err)
		}
		return nil, nil
	case err != nil && ctx.Err() != nil:
		// The caller gave up (a batch's fill time ran out): entries may
		// have been delivered with the reply it did not wait for; read
		// the pending list from the cursor next.
		c.backlog = true
		return nil, l.fail("claim", err)
	case err != nil:
		// Entries may have been delivered to this consumer with a reply
		// that was lost, or Redis may have restarted: start over, as a
		// new term does, from what Redis holds now.
		l.restartClaim.Store(true)
		return nil, l.fail("claim", err)
	}
	if last != "" {
		return nil, l.waitAppend(ctx, last)
	}
	if c.backlog && len(msgs) == 0 {
		c.backlog = false
		return nil, nil
	}
	es := make([]txlog.Entry, 0, len(msgs))
	var gone []string
	var bad error
	cursor := c.cursor
	for _, m := range msgs {
		if m.Values == nil {
			// Pending, but deleted from the stream: acknowledged by an
			// applier that lost its lease after committing. Drop it.
			gone = append(gone, m.ID)
			cursor = m.ID
			continue
		}
		e, err := decodeMessageFrom(m, &l.recent)
		if err != nil {
			// This entry and those after it were delivered but are not
			// returned: read them from the pending list next, where this
			// error comes again. A corrupt entry is never skipped.
			c.backlog = true
			bad = fmt.Errorf("redislog: claim: %w", err)
			break
		}
		es = append(es, e)
		cursor = m.ID
	}
	if len(gone) > 0 {
		if err := l.client.XAck(ctx, l.keys.stream, groupName, gone...).Err(); err != nil {
			c.backlog = true // all of them come again from the cursor
			return nil, l.fail("claim: acknowledge deleted entries", err)
		}
	}
	c.cursor = cursor
	if bad != nil && len(es) == 0 {
		return nil, bad
	}
	return es, nil
}

// holderValue is the lease value the claim and take-over scripts check:
// "" on a log without a Lease, this process's value while it holds the
// lease, and ErrNotHolder while it does not.
func (l *Log) holderValue() (string, error) {
	if !l.leased.Load() {
		return "", nil
	}
	v := l.holder.Load()
	if v == nil {
		return "", fmt.Errorf("redislog: claim: %w", txlog.ErrNotHolder)
	}
	return *v, nil
}

// parseTakeOver reads XAUTOCLAIM … JUSTID's reply, as takeOverScript
// passes it on: the next start id, and how many entries moved.
func parseTakeOver(res []any) (next string, moved int, err error) {
	if len(res) < 2 {
		return "", 0, fmt.Errorf("%w: take-over script answered %d values", ErrCorrupt, len(res))
	}
	next, ok := res[0].(string)
	ids, ok2 := res[1].([]any)
	if !ok || !ok2 {
		return "", 0, fmt.Errorf("%w: take-over script answered %T, %T", ErrCorrupt, res[0], res[1])
	}
	return next, len(ids), nil
}

// waitAppend waits, at most ClaimBlock (less if ctx has an earlier
// deadline), for an entry after last to be appended, with an XREAD that
// delivers nothing to the group: only deliver delivers, under the
// lease. It returns nil when one came or the time ran out.
func (l *Log) waitAppend(ctx context.Context, last string) error {
	block := l.cfg.ClaimBlock
	if d, ok := ctx.Deadline(); ok {
		block = max(min(block, time.Until(d)), time.Millisecond) // 0 would block for ever
	}
	err := l.client.XRead(ctx, &redis.XReadArgs{Streams: []string{l.keys.stream, last}, Count: 1, Block: block}).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return l.fail("claim: wait for appends", err)
	}
	return nil
}

// deliverTries is how many times deliver tries when the lease's key
// changed under its WATCH (its holder's renewals change it too) before it
// gives up.
const deliverTries = 3

// deliver delivers up to limit entries of the stream to this consumer
// with XREADGROUP (start ">" for new entries, else the id after which
// this consumer's pending entries are read), but only while holder ("" on
// a log without a lease) holds the lease: the check and the read are one
// step, so an applier that lost its lease (it was paused past the TTL, or
// Redis came back without its key) can never take entries into its
// pending list behind the back of the new holder, which would then skip
// them for good.
//
// The step is a transaction under WATCH of the lease's key: GET checks the
// holder, and MULTI/EXEC reads, so that EXEC does nothing if the key
// changed since. (A script would do the same in one round trip, but each
// entry's reply passing through Lua took Redis three times the
// XREADGROUP's own time.) When it reads new entries and finds none, the
// same EXEC's XREVRANGE gives the id of the stream's last entry as last
// ("0-0" for an empty stream), from which the caller waits for more with
// a plain XREAD (which delivers nothing). An entry deleted while pending
// comes with no Values. Not holding the lease is txlog.ErrNotHolder; a
// missing group, a NOGROUP error.
func (l *Log) deliver(ctx context.Context, holder string, limit int, start string) (msgs []redis.XMessage, last string, err error) {
	var read *redis.XStreamSliceCmd
	var newest *redis.XMessageSliceCmd
	queue := func(p redis.Pipeliner) error {
		read = p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: groupName, Consumer: l.cfg.Consumer,
			Streams: []string{l.keys.stream, start}, Count: int64(limit), Block: -1})
		if start == ">" {
			newest = p.XRevRangeN(ctx, l.keys.stream, "+", "-", 1)
		}
		return nil
	}
	if holder == "" {
		_, err = l.client.TxPipelined(ctx, queue)
	} else {
		for range deliverTries {
			err = l.client.Watch(ctx, func(tx *redis.Tx) error {
				v, err := tx.Get(ctx, l.keys.lease).Result()
				switch {
				case errors.Is(err, redis.Nil) || err == nil && v != holder:
					return txlog.ErrNotHolder
				case err != nil:
					return err
				}
				_, err = tx.TxPipelined(ctx, queue)
				return err
			}, l.keys.lease)
			if !errors.Is(err, redis.TxFailedErr) {
				break
			}
		}
	}
	// A read that found nothing new answers nil, which go-redis reports
	// as redis.Nil: the pipeline's error then, not a failure.
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", err
	}
	streams, err := read.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", err
	}
	if len(streams) > 0 {
		msgs = streams[0].Messages
	}
	if len(msgs) > 0 || start != ">" {
		return msgs, "", nil
	}
	tail, err := newest.Result()
	if err != nil {
		return nil, "", err
	}
	if len(tail) == 0 {
		return nil, "0-0", nil
	}
	return nil, tail[0].ID, nil
}

// Takeover does now what the first Claim after a Lease.Acquire would do
// first: it takes over the entries other consumers claimed and left (see
// Claim), waiting for those younger than MinIdle, so that the next Claims
// deliver them, then the rest of this consumer's pending entries, then new
// ones. An applier calls it when it becomes the active one; if it fails,
// the next Claim tries again.
func (l *Log) Takeover(ctx context.Context) error {
	l.claimMu.Lock()
	defer l.claimMu.Unlock()
	if l.isClosing() {
		return fmt.Errorf("redislog: take over: %w", txlog.ErrClosed)
	}
	l.restartClaim.Store(false)
	l.claim = claimState{} // not started: a failure here is retried by Claim
	if err := l.takeOver(ctx); err != nil {
		return err
	}
	l.claim.started, l.claim.backlog, l.claim.cursor = true, true, "0"
	return nil
}

// takeOver moves to this consumer every entry pending under another
// consumer of the group, so that Claim delivers them first and in stream
// order. Entries idle for MinIdle are taken at once; younger ones (their
// consumer may be alive) are waited for, polling, until they are acked or
// idle long enough. Then consumers left with nothing pending are removed
// from the group, so that the names of past processes do not pile up. The
// caller holds claimMu.
func (l *Log) takeOver(ctx context.Context) error {
	minIdle := l.cfg.MinIdle
	if l.leased.Load() {
		// Only the lease's holder claims (deliver), so every entry
		// pending under another consumer was delivered in an earlier
		// term: take it now, however young. Its former holder may still
		// be applying it; the fencing token refuses its commit once this
		// term has committed, and spool_applied skips it here if it
		// committed first.
		minIdle = 0
	}
	poll := min(max(minIdle/4, 10*time.Millisecond), time.Second)
	waiting := false
	for {
		taken := 0
		start := "0-0"
		for {
			holder, err := l.holderValue()
			if err != nil {
				return err
			}
			res, err := takeOverScript.Run(ctx, l.client, []string{l.keys.stream, l.keys.lease},
				groupName, l.cfg.Consumer, holder, minIdle.Milliseconds(), start, takeOverBatch).Slice()
			if redis.HasErrorPrefix(err, "NOTHOLDER") {
				return fmt.Errorf("redislog: claim: take over pending entries: %w", txlog.ErrNotHolder)
			}
			if err != nil {
				return l.fail("claim: take over pending entries", err)
			}
			next, n, err := parseTakeOver(res)
			if err != nil {
				return l.fail("claim: take over pending entries", err)
			}
			taken += n
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
		if taken > 0 {
			l.logger.Info("redislog: took over entries other consumers had claimed and left", "consumer", l.cfg.Consumer, "entries", taken)
		}
		p, err := l.client.XPending(ctx, l.keys.stream, groupName).Result()
		if err != nil {
			return l.fail("claim: list pending entries", err)
		}
		var others int64
		for name, n := range p.Consumers {
			if name != l.cfg.Consumer {
				others += n
			}
		}
		if others == 0 {
			break
		}
		if !waiting {
			l.logger.Info("redislog: waiting for entries another consumer claimed to be idle for MinIdle before taking them over",
				"consumer", l.cfg.Consumer, "entries", others, "min_idle", minIdle)
			waiting = true
		}
		t := time.NewTimer(poll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("redislog: claim: %w", ctx.Err())
		case <-l.closing:
			t.Stop()
			return fmt.Errorf("redislog: claim: %w", txlog.ErrClosed)
		}
	}
	l.forgetIdleConsumers(ctx)
	return nil
}

// forgetIdleConsumers deletes the group's consumers, other than this one,
// that have nothing pending and were idle for MinIdle. A live consumer
// deleted by mistake is created again by its next read; its pending entries
// are never touched, since only consumers with none are deleted. Failures
// are logged: nothing depends on it.
func (l *Log) forgetIdleConsumers(ctx context.Context) {
	cs, err := l.client.XInfoConsumers(ctx, l.keys.stream, groupName).Result()
	if err != nil {
		l.logger.Debug("redislog: list consumers", "err", err)
		return
	}
	for _, c := range cs {
		if c.Name == l.cfg.Consumer || c.Pending != 0 || c.Idle < l.cfg.MinIdle {
			continue
		}
		if err := l.client.XGroupDelConsumer(ctx, l.keys.stream, groupName, c.Name).Err(); err != nil {
			l.logger.Debug("redislog: delete idle consumer", "consumer", c.Name, "err", err)
			continue
		}
		l.logger.Debug("redislog: deleted idle consumer", "consumer", c.Name)
	}
}

// Ack acknowledges claimed entries and deletes them from the stream, in one
// script call: XACK, then the deletion of the entries acknowledged (see
// ackScript). An entry
// that was not pending (never claimed, or acknowledged already) is left
// alone: acknowledging twice is harmless, and an entry never claimed is
// never deleted. Order does not matter to the stream.
func (l *Log) Ack(ctx context.Context, entries []txlog.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redislog: ack: %w", err)
	}
	l.ackMu.Lock()
	defer l.ackMu.Unlock()
	if l.isClosing() {
		return fmt.Errorf("redislog: ack: %w", txlog.ErrClosed)
	}
	newest := entries[0].Pos
	args := make([]any, 2, 2+len(entries))
	for _, e := range entries {
		if _, _, ok := parsePos(e.Pos); !ok {
			return fmt.Errorf("redislog: ack: %q is not a position of this log", e.Pos)
		}
		if ComparePos(e.Pos, newest) > 0 {
			newest = e.Pos
		}
		args = append(args, e.Pos)
	}
	args[0], args[1] = groupName, newest
	n, err := ackScript.Run(ctx, l.client, []string{l.keys.stream}, args...).Int()
	if err != nil {
		return l.fail("ack", err)
	}
	if n < len(entries) {
		l.logger.Debug("redislog: acknowledged entries that were not pending (acknowledged twice?)",
			"entries", len(entries), "pending", n)
	}
	return nil
}
