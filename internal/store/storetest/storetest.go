package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// Schema is the SQL the suite creates its tables with. Both SQLite and
// PostgreSQL accept it, and its declared types map onto every kind but
// arrays through schema.KindOfDeclared. Key order of JSON values in the
// suite is jsonb's (shorter keys first), so a value reads back as written.
const Schema = `
create table obs (
	id uuid primary key,
	target text not null,
	code text unique,
	exposure double precision,
	frames integer default 0,
	big bigint,
	price numeric,
	done boolean,
	started_at timestamptz,
	meta jsonb,
	raw bytea
);
create table frames (
	id uuid primary key,
	obs_id uuid not null references obs (id),
	n integer
);
create table counters (n integer primary key, label text);
create table readings (ts text, v double precision);
create table pairs (a integer, b integer, label text, primary key (a, b));
`

// Run runs the suite. open returns a fresh, migrated, empty database each
// call; the suite closes it when the test ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"Catalog", testCatalog},
		{"ExecError", testExecError},
		{"RoundTrip", testRoundTrip},
		{"LogRoundTrip", testLogRoundTrip},
		{"MultiOperation", testMultiOperation},
		{"IntegerKey", testIntegerKey},
		{"KV", testKV},
		{"Concurrent", testConcurrent},
		{"Replay", testReplay},
		{"PermanentFailures", testPermanentFailures},
		{"GateRefusal", testGateRefusal},
		{"Fencing", testFencing},
		{"DeadLetterReplay", testDeadLetterReplay},
		{"SupersededRetries", testSupersededRetries},
		{"DeadLetterAttempts", testDeadLetterAttempts},
		{"ListDeadLetters", testListDeadLetters},
		{"DropDeadLetter", testDropDeadLetter},
		{"PruneApplied", testPruneApplied},
		{"LogHeads", testLogHeads},
		{"Transient", testTransient},
		{"Coalescing", testCoalescing},
		{"CoalescedPoison", testCoalescedPoison},
		{"Get", testGet},
		{"Query", testQuery},
		{"QueryOrder", testQueryOrder},
		{"ReadOnlyTable", testReadOnlyTable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, setup(t, open))
		})
	}
}

// fixture is one test's database with the suite's tables.
type fixture struct {
	t   *testing.T
	ctx context.Context
	s   store.Store
	cat *schema.Catalog
}

func setup(t *testing.T, open func(t *testing.T) store.Store) *fixture {
	t.Helper()
	s := open(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	ctx := t.Context()
	if err := s.Exec(ctx, Schema); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	cat, err := s.Catalog(ctx)
	if err != nil {
		t.Fatalf("catalog: %v", err)
	}
	return &fixture{t: t, ctx: ctx, s: s, cat: cat}
}

func (f *fixture) table(name string) *schema.Table {
	f.t.Helper()
	tb, err := f.cat.Table(name)
	if err != nil {
		f.t.Fatalf("catalog: %v", err)
	}
	return tb
}

// apply applies a batch that must not fail transiently.
func (f *fixture) apply(gate store.Gate, batch ...*txn.Transaction) []store.Outcome {
	f.t.Helper()
	out, err := f.s.ApplyBatch(f.ctx, batch, gate)
	if err != nil {
		f.t.Fatalf("apply batch: %v", err)
	}
	if len(out) != len(batch) {
		f.t.Fatalf("apply batch: %d outcomes for %d transactions", len(out), len(batch))
	}
	return out
}

// mustApply applies a batch every transaction of which must be applied.
func (f *fixture) mustApply(batch ...*txn.Transaction) {
	f.t.Helper()
	for i, o := range f.apply(nil, batch...) {
		if o.Err != nil || o.Duplicate {
			f.t.Fatalf("transaction %d: outcome %+v, want applied", i, o)
		}
	}
}

func (f *fixture) get(table, key string) (schema.Row, bool) {
	f.t.Helper()
	row, ok, err := f.s.Get(f.ctx, f.table(table), key)
	if err != nil {
		f.t.Fatalf("get %s %s: %v", table, key, err)
	}
	return row, ok
}

// wantRow fails unless the row of table with key equals want.
func (f *fixture) wantRow(table, key string, want schema.Row) {
	f.t.Helper()
	got, ok := f.get(table, key)
	if !ok {
		f.t.Fatalf("get %s %s: not found, want %v", table, key, want)
	}
	equalRow(f.t, got, want)
}

func (f *fixture) wantNoRow(table, key string) {
	f.t.Helper()
	if got, ok := f.get(table, key); ok {
		f.t.Fatalf("get %s %s: found %v, want none", table, key, got)
	}
}

func (f *fixture) wantApplied(id string, want bool) {
	f.t.Helper()
	_, ok, err := f.s.Applied(f.ctx, id)
	if err != nil {
		f.t.Fatalf("applied %s: %v", id, err)
	}
	if ok != want {
		f.t.Fatalf("applied %s = %v, want %v", id, ok, want)
	}
}

func (f *fixture) wantNoDeadLetter(id string) {
	f.t.Helper()
	dl, err := f.s.DeadLetter(f.ctx, id)
	if !errors.Is(err, store.ErrNotFound) {
		f.t.Fatalf("dead letter %s = %+v, %v; want store.ErrNotFound", id, dl, err)
	}
}

// equalRow fails unless got and want hold the same columns with equal
// canonical values (same Go type, same value).
func equalRow(t *testing.T, got, want schema.Row) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		for k := range mergeKeys(got, want) {
			if g, w := got[k], want[k]; !reflect.DeepEqual(g, w) {
				t.Errorf("column %s = %#v (%T), want %#v (%T)", k, show(g), g, show(w), w)
			}
		}
		t.FailNow()
	}
}

func mergeKeys(a, b schema.Row) map[string]bool {
	m := make(map[string]bool)
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

// show makes JSON values readable in failures.
func show(v any) any {
	if r, ok := v.(json.RawMessage); ok {
		return string(r)
	}
	return v
}

// tx builds a transaction of ops with a fresh id.
func tx(ops ...txn.Operation) *txn.Transaction {
	return &txn.Transaction{ID: txn.NewID(), Operations: ops}
}

// insert and upsert carry the key in Values as well as in ID, as resolved
// operations do.
func insert(table, keyCol, id string, key any, values schema.Row) txn.Operation {
	v := map[string]any(clone(values))
	v[keyCol] = key
	return txn.Operation{Op: txn.Insert, Table: table, ID: id, Values: v}
}

func upsert(table, keyCol, id string, key any, values schema.Row) txn.Operation {
	op := insert(table, keyCol, id, key, values)
	op.Op = txn.Upsert
	return op
}

func update(table, id string, values schema.Row) txn.Operation {
	return txn.Operation{Op: txn.Update, Table: table, ID: id, Values: clone(values)}
}

func del(table, id string) txn.Operation {
	return txn.Operation{Op: txn.Delete, Table: table, ID: id}
}

// insertObs inserts into obs with a uuid key.
func insertObs(id string, values schema.Row) txn.Operation {
	return insert("obs", "id", id, id, values)
}

func clone(r schema.Row) schema.Row {
	c := make(schema.Row, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}

// merge returns base with over's columns set.
func merge(base, over schema.Row) schema.Row {
	m := clone(base)
	for k, v := range over {
		m[k] = v
	}
	return m
}

// gate is a store.Gate that refuses the transactions named in refuse,
// records what it was asked and told, and may run a hook on Admit.
type gate struct {
	mu       sync.Mutex
	refuse   map[string]error
	onAdmit  func(tx *txn.Transaction)
	admitted []string
	failed   map[string]error
	log      string
	token    int64
}

func newGate() *gate { return &gate{refuse: map[string]error{}, failed: map[string]error{}} }

func (g *gate) Admit(tx *txn.Transaction) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.admitted = append(g.admitted, tx.ID)
	if g.onAdmit != nil {
		g.onAdmit(tx)
	}
	return g.refuse[tx.ID]
}

func (g *gate) Failed(tx *txn.Transaction, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failed[tx.ID] = err
}

func (g *gate) Fence() (string, int64) { return g.log, g.token }

func (g *gate) failures() map[string]error {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := make(map[string]error, len(g.failed))
	for k, v := range g.failed {
		m[k] = v
	}
	return m
}
