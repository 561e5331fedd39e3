package redislog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/changes"
	"github.com/spoolgw/spool/internal/txn"
)

// The events stream, spool:{n}:events, is the log's changes of state in
// the order they happened, for live events: every process reads it (a
// blocking XREAD from the last entry it read), so a subscriber of any
// process sees the writes of every other, and resumes from a position in
// it. Its entries are compact; the rows are read by each process.
//
//	s=q tx=<id> ops=<encodeOps>          queued: written by the append script,
//	                                     in the same atomic step as the append
//	s=a|r lsn=<LSN> txs=<id>,<id>,…      applied or replicated, a run of a batch
//	s=f tx=<id> ops=… err=… code=…        failed (dead-lettered)
//
// The process that settles a batch writes its applied, replicated and
// failed entries (PublishEvents) after the settle; every XADD trims the
// stream to about Config.EventsMaxLen entries.

// Event states as the stream spells them.
const (
	eventQueued     = "q"
	eventApplied    = "a"
	eventReplicated = "r"
	eventFailed     = "f"
)

// opLetters are the operation kinds as encodeOps writes them.
var opLetters = map[txn.Kind]byte{txn.Insert: 'i', txn.Update: 'u', txn.Upsert: 's', txn.Delete: 'd'}

// encodeOps writes the kind, table and key of each operation, without
// values: per operation a letter (i, u, s, d), then the table and the key,
// each as its length in bytes, ':', itself ("u12:observations3:abc").
func encodeOps(ops []txn.Operation) string {
	var b strings.Builder
	for _, op := range ops {
		b.WriteByte(opLetters[op.Op])
		for _, s := range [2]string{op.Table, op.ID} {
			b.WriteString(strconv.Itoa(len(s)))
			b.WriteByte(':')
			b.WriteString(s)
		}
	}
	return b.String()
}

// decodeOps reads what encodeOps wrote.
func decodeOps(s string) ([]txn.Operation, error) {
	var ops []txn.Operation
	for len(s) > 0 {
		var op txn.Operation
		switch s[0] {
		case 'i':
			op.Op = txn.Insert
		case 'u':
			op.Op = txn.Update
		case 's':
			op.Op = txn.Upsert
		case 'd':
			op.Op = txn.Delete
		default:
			return nil, fmt.Errorf("%w: events: operation kind %q", ErrCorrupt, s[0])
		}
		s = s[1:]
		var parts [2]string
		for i := range parts {
			n, rest, ok := strings.Cut(s, ":")
			size, err := strconv.Atoi(n)
			if !ok || err != nil || size < 0 || size > len(rest) {
				return nil, fmt.Errorf("%w: events: operation %d: bad length %q", ErrCorrupt, len(ops), n)
			}
			parts[i], s = rest[:size], rest[size:]
		}
		op.Table, op.ID = parts[0], parts[1]
		ops = append(ops, op)
	}
	return ops, nil
}

// PublishEvents adds the applied, replicated and failed changes of cs to
// the events stream, in one pipeline: a run of changes to one state under
// one LSN as one entry, a failure as an entry of its own. Queued changes
// are skipped (the append script wrote them).
func (l *Log) PublishEvents(ctx context.Context, cs []changes.Change) error {
	_, err := l.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		add := func(values ...any) {
			p.XAdd(ctx, &redis.XAddArgs{Stream: l.keys.events, MaxLen: int64(l.cfg.EventsMaxLen), Approx: true, Values: values})
		}
		for i := 0; i < len(cs); {
			c := cs[i]
			switch c.State {
			case txn.Failed:
				var ops []txn.Operation
				if c.Tx != nil {
					ops = c.Tx.Operations
				}
				msg := ""
				if c.Err != nil {
					msg = c.Err.Error()
				}
				add("s", eventFailed, "tx", c.ID, "ops", encodeOps(ops), "err", msg, "code", c.Code)
				i++
			case txn.Applied, txn.Replicated:
				j := i + 1
				for j < len(cs) && cs[j].State == c.State && cs[j].LSN == c.LSN {
					j++
				}
				ids := make([]string, 0, j-i)
				for _, d := range cs[i:j] {
					ids = append(ids, d.ID)
				}
				s := eventApplied
				if c.State == txn.Replicated {
					s = eventReplicated
				}
				add("s", s, "lsn", uint64(c.LSN), "txs", strings.Join(ids, ","))
				i = j
			default:
				i++
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redislog: publish events: %w", err)
	}
	return nil
}

// ReadEvents returns up to count entries of the events stream after
// position after, waiting up to block for the first (none, without error,
// if none came).
func (l *Log) ReadEvents(ctx context.Context, after string, count int, block time.Duration) ([]changes.Record, error) {
	res, err := l.client.XRead(ctx, &redis.XReadArgs{Streams: []string{l.keys.events, after}, Count: int64(count), Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redislog: read events: %w", err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return decodeEvents(res[0].Messages)
}

// RangeEvents returns up to count entries of the events stream from
// position from, inclusive.
func (l *Log) RangeEvents(ctx context.Context, from string, count int) ([]changes.Record, error) {
	msgs, err := l.client.XRangeN(ctx, l.keys.events, from, "+", int64(count)).Result()
	if err != nil {
		return nil, fmt.Errorf("redislog: range events: %w", err)
	}
	return decodeEvents(msgs)
}

// EventBounds returns the positions of the first and the last entry the
// events stream keeps; both "0-0" when it is empty.
func (l *Log) EventBounds(ctx context.Context) (first, last string, err error) {
	var head, tail *redis.XMessageSliceCmd
	if _, err := l.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		head = p.XRangeN(ctx, l.keys.events, "-", "+", 1)
		tail = p.XRevRangeN(ctx, l.keys.events, "+", "-", 1)
		return nil
	}); err != nil {
		return "", "", fmt.Errorf("redislog: events bounds: %w", err)
	}
	first, last = "0-0", "0-0"
	if h := head.Val(); len(h) > 0 {
		first = h[0].ID
	}
	if t := tail.Val(); len(t) > 0 {
		last = t[0].ID
	}
	return first, last, nil
}

// decodeEvents turns stream entries into records of changes.
func decodeEvents(msgs []redis.XMessage) ([]changes.Record, error) {
	out := make([]changes.Record, 0, len(msgs))
	for _, m := range msgs {
		cs, err := decodeEvent(m.Values)
		if err != nil {
			return nil, fmt.Errorf("events entry %s: %w", m.ID, err)
		}
		out = append(out, changes.Record{Pos: m.ID, Changes: cs})
	}
	return out, nil
}

// decodeEvent reads one entry of the events stream.
func decodeEvent(v map[string]any) ([]changes.Change, error) {
	str := func(k string) string { s, _ := v[k].(string); return s }
	switch str("s") {
	case eventQueued, eventFailed:
		ops, err := decodeOps(str("ops"))
		if err != nil {
			return nil, err
		}
		id := str("tx")
		c := changes.Change{ID: id, State: txn.Queued, Logged: true, At: txn.IDTime(id), Tx: &txn.Transaction{ID: id, Operations: ops}}
		if str("s") == eventFailed {
			c.State, c.Logged, c.Code, c.At = txn.Failed, false, str("code"), time.Time{}
			c.Err = errors.New(str("err"))
		}
		return []changes.Change{c}, nil
	case eventApplied, eventReplicated:
		lsn, err := strconv.ParseUint(str("lsn"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: events: lsn %q", ErrCorrupt, str("lsn"))
		}
		state := txn.Applied
		if str("s") == eventReplicated {
			state = txn.Replicated
		}
		ids := strings.Split(str("txs"), ",")
		cs := make([]changes.Change, len(ids))
		for i, id := range ids {
			cs[i] = changes.Change{ID: id, State: state, LSN: txn.LSN(lsn)}
		}
		return cs, nil
	}
	return nil, fmt.Errorf("%w: events: state %q", ErrCorrupt, str("s"))
}
