package redislog

import (
	"context"
	"encoding/json"
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
// it. Its entries are compact: an insert carries its values, and the rows
// other changes leave are read by each process.
//
//	s=q tx=<id> ops=<encodeOps>          queued: written by the append script,
//	                                     in the same atomic step as the append;
//	                                     an insert's values included
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

// encodeOps writes each operation's kind, table and key, and an insert's
// values where vals has them (vals[i] is ops[i]'s as JSON; vals nil or
// vals[i] nil: none): per operation a letter (i, u, s, d; I for an insert
// with its values), then the table, the key and, after I, the values, each
// as its length in bytes, ':', itself ("u12:observations3:abc",
// `I3:obs1:7:{"id":7}`). An insert's values let every process's live
// events know the row it leaves without reading it.
func encodeOps(ops []txn.Operation, vals [][]byte) string {
	var b strings.Builder
	for i, op := range ops {
		var v []byte
		if i < len(vals) && op.Op == txn.Insert {
			v = vals[i]
		}
		if v != nil {
			b.WriteByte('I')
		} else {
			b.WriteByte(opLetters[op.Op])
		}
		for _, s := range [2]string{op.Table, op.ID} {
			b.WriteString(strconv.Itoa(len(s)))
			b.WriteByte(':')
			b.WriteString(s)
		}
		if v != nil {
			b.WriteString(strconv.Itoa(len(v)))
			b.WriteByte(':')
			b.Write(v)
		}
	}
	return b.String()
}

// decodeOps reads what encodeOps wrote; normalize (if not nil) restores
// canonical values in an insert's. An insert's values are decoded only if
// values is nil or says yes to its table; others are left nil.
func decodeOps(s string, normalize func(table string, values map[string]any), values func(table string) bool) ([]txn.Operation, error) {
	var ops []txn.Operation
	for len(s) > 0 {
		var op txn.Operation
		n := 2
		switch s[0] {
		case 'i':
			op.Op = txn.Insert
		case 'I':
			op.Op, n = txn.Insert, 3
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
		var parts [3]string
		for i := range n {
			size, rest, ok := strings.Cut(s, ":")
			l, err := strconv.Atoi(size)
			if !ok || err != nil || l < 0 || l > len(rest) {
				return nil, fmt.Errorf("%w: events: operation %d: bad length %q", ErrCorrupt, len(ops), size)
			}
			parts[i], s = rest[:l], rest[l:]
		}
		op.Table, op.ID = parts[0], parts[1]
		if n == 3 && (values == nil || values(op.Table)) {
			dec := json.NewDecoder(strings.NewReader(parts[2]))
			dec.UseNumber()
			if err := dec.Decode(&op.Values); err != nil || op.Values == nil {
				return nil, fmt.Errorf("%w: events: operation %d: values: %v", ErrCorrupt, len(ops), err)
			}
			if normalize != nil {
				normalize(op.Table, op.Values)
			}
		}
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
				add("s", eventFailed, "tx", c.ID, "ops", encodeOps(ops, nil), "err", msg, "code", c.Code)
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
// if none came). An insert's values are decoded only if values is nil or
// says yes to its table (a reader with nobody following it spares the
// decoding); others are left nil.
func (l *Log) ReadEvents(ctx context.Context, after string, count int, block time.Duration, values func(table string) bool) ([]changes.Record, error) {
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
	return decodeEvents(res[0].Messages, l.cfg.Normalize, values)
}

// RangeEvents returns up to count entries of the events stream from
// position from, inclusive.
func (l *Log) RangeEvents(ctx context.Context, from string, count int) ([]changes.Record, error) {
	msgs, err := l.client.XRangeN(ctx, l.keys.events, from, "+", int64(count)).Result()
	if err != nil {
		return nil, fmt.Errorf("redislog: range events: %w", err)
	}
	return decodeEvents(msgs, l.cfg.Normalize, nil)
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

// decodeEvents turns stream entries into records of changes; normalize
// and values are decodeOps's.
func decodeEvents(msgs []redis.XMessage, normalize func(string, map[string]any), values func(string) bool) ([]changes.Record, error) {
	out := make([]changes.Record, 0, len(msgs))
	for _, m := range msgs {
		cs, err := decodeEvent(m.Values, normalize, values)
		if err != nil {
			return nil, fmt.Errorf("events entry %s: %w", m.ID, err)
		}
		out = append(out, changes.Record{Pos: m.ID, Changes: cs})
	}
	return out, nil
}

// decodeEvent reads one entry of the events stream.
func decodeEvent(v map[string]any, normalize func(string, map[string]any), values func(string) bool) ([]changes.Change, error) {
	str := func(k string) string { s, _ := v[k].(string); return s }
	switch str("s") {
	case eventQueued, eventFailed:
		ops, err := decodeOps(str("ops"), normalize, values)
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
