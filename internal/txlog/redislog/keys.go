package redislog

import (
	"cmp"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/spoolgw/spool/internal/txn"
)

// groupName is the log's consumer group: the appliers of one log share it,
// so that each entry is delivered to one of them.
const groupName = "appliers"

// keys are the Redis keys of one log. Every one starts with prefix,
// "spool:{<name>}:", whose {<name>} hash tag puts them all in one Redis
// Cluster slot. doc.go describes the layout.
type keys struct {
	prefix string
	stream string // the log: a stream of transactions
	tables string // set of table names with pending rows
	counts string // hash: txs, rows, ops of the overlay
	lease  string // the applier lease
	fence  string // the fencing-token counter
	layout string // the version of this layout of the keys
	events string // stream of state changes, read by every process's live events
	synced string // written before each WAIT, so that the WAIT covers every earlier write
}

func newKeys(name string) keys {
	p := "spool:{" + name + "}:"
	return keys{
		prefix: p,
		stream: p + "stream",
		tables: p + "tables",
		counts: p + "counts",
		lease:  p + "lease",
		fence:  p + "fence",
		layout: p + "layout",
		events: p + "events",
		synced: p + "synced",
	}
}

// rowMember names one row inside the log's keys: the table's length in
// bytes, ':', the table, ':', the key. The length prefix makes it
// unambiguous whatever ':' the table or key holds ("a:b"/"c" and "a"/"b:c"
// give "3:a:b:c" and "1:a:b:c"). The append and evict scripts build the
// same string (Lua's # is a length in bytes too).
func rowMember(table, key string) string {
	return strconv.Itoa(len(table)) + ":" + table + ":" + key
}

// row is the list of pending changes to one row.
func (k keys) row(table, key string) string { return k.prefix + "row:" + rowMember(table, key) }

// RowKey is the Redis key of the list of pending changes to one row (key:
// its normalised text) of table in the log named name. The list is empty
// (the key absent) when no change to the row is pending. spool-bench's
// minimal reader reads it as spool's GET does.
func RowKey(name, table, key string) string { return newKeys(name).row(table, key) }

// StreamKey is the Redis key of the stream of the log named name, read by
// the consumer group GroupName; a test that failed shows its state.
func StreamKey(name string) string { return newKeys(name).stream }

// EventsKey is the Redis key of the events stream of the log named name:
// the changes every process's live events read (see events.go).
func EventsKey(name string) string { return newKeys(name).events }

// GroupName is the consumer group of every log's stream.
const GroupName = groupName

// ops is the list of table's pending changes in log order, one element per
// change: its row-list entry, '\n', its row's key. The table name is the
// whole rest of the key, so it needs no encoding. The entry is JSON, which
// holds no raw newline, so the first '\n' ends it; and the element begins
// as the entry does, with entryPrefix, which is how the evict script finds
// it. A list of the table is one LRANGE of it, whatever its number of rows.
func (k keys) ops(table string) string { return k.prefix + "ops:" + table }

// seq is the hash of table's counters, which let a reader of the table's
// list of changes read only what was added since its last read (see
// tableScript). It is kept when the list empties, so that they never go
// back.
func (k keys) seq(table string) string { return k.prefix + "seq:" + table }

// splitElement splits an element of a table's list of changes into the
// row-list entry and the row's key.
func splitElement(s string) (entry, key string, ok bool) {
	return strings.Cut(s, "\n")
}

// layoutVersion is the version of the key layout this package writes. A
// log without the layout key was written by spool before the tables' lists
// of changes: Open builds them (see migrateScript). Open refuses a later
// version than this one.
const layoutVersion = 2

// tx is the hash of one pending transaction: field "pos" holds its stream
// id, and one field per row it changes (a rowMember) counts its changes to
// that row.
func (k keys) tx(id string) string { return k.prefix + "tx:" + id }

// opEntry is one element of a row's list: a pending change. Tx comes first
// so that every entry of a transaction starts with entryPrefix(tx), which
// is how the evict script finds them without decoding JSON.
type opEntry struct {
	Tx     string         `json:"tx"`
	Kind   string         `json:"kind"`
	Values map[string]any `json:"values,omitempty"`
}

// encodeEntry writes an operation's row-list entry, the JSON of its
// opEntry, from its transaction's entryPrefix and its values' JSON (nil:
// none), which the caller encodes once for the entry and the events
// stream.
func encodeEntry(prefix string, kind txn.Kind, values []byte) []byte {
	k, _ := json.Marshal(string(kind)) // a string always encodes
	b := make([]byte, 0, len(prefix)+len(k)+len(values)+20)
	b = append(b, prefix...)
	b = append(b, `"kind":`...)
	b = append(b, k...)
	if values != nil {
		b = append(b, `,"values":`...)
		b = append(b, values...)
	}
	return append(b, '}')
}

// entryPrefix is how every row-list entry of transaction id begins.
func entryPrefix(id string) string {
	b, _ := json.Marshal(id) // a string always encodes
	return `{"tx":` + string(b) + `,`
}

// ComparePos compares two positions (stream ids, "<ms>-<seq>") of one log
// as cmp.Compare does: numerically, milliseconds first. Positions that are
// not stream ids compare as text, after those that are.
func ComparePos(a, b string) int {
	am, as, aok := parsePos(a)
	bm, bs, bok := parsePos(b)
	switch {
	case aok && bok:
		if c := cmp.Compare(am, bm); c != 0 {
			return c
		}
		return cmp.Compare(as, bs)
	case aok:
		return -1
	case bok:
		return 1
	}
	return cmp.Compare(a, b)
}

// parsePos splits a stream id into its milliseconds and sequence number.
func parsePos(p string) (ms, seq uint64, ok bool) {
	m, s, found := strings.Cut(p, "-")
	if !found {
		return 0, 0, false
	}
	var err error
	if ms, err = strconv.ParseUint(m, 10, 64); err != nil {
		return 0, 0, false
	}
	if seq, err = strconv.ParseUint(s, 10, 64); err != nil {
		return 0, 0, false
	}
	return ms, seq, true
}
