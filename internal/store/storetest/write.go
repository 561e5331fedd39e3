package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// fullObs is an obs row with a value of every kind, in canonical form.
// Every value survives both databases exactly: a float with an exact binary
// form, a decimal without trailing zeros, a timestamp in microseconds, JSON
// whose keys are in jsonb's order and sorted.
func fullObs(id string) schema.Row {
	return schema.Row{
		"id":         id,
		"target":     "M31",
		"code":       "full-" + id,
		"exposure":   30.5,
		"frames":     int64(12),
		"big":        int64(1) << 40,
		"price":      json.Number("12.5"),
		"done":       true,
		"started_at": "2024-05-06T07:08:09.123456000Z",
		"meta":       json.RawMessage(`{"a":1,"bb":[1,2.5],"ccc":"R"}`),
		"raw":        []byte{0, 1, 2, 0xfe, 0xff},
	}
}

// emptyObs is what an obs row holds when only id and target were given.
func emptyObs(id, target string) schema.Row {
	return schema.Row{
		"id": id, "target": target, "code": nil, "exposure": nil, "frames": int64(0), "big": nil,
		"price": nil, "done": nil, "started_at": nil, "meta": nil, "raw": nil,
	}
}

func testCatalog(t *testing.T, f *fixture) {
	obs := f.table("obs")
	kinds := map[string]schema.Kind{
		"id": schema.UUID, "target": schema.Text, "code": schema.Text, "exposure": schema.Real,
		"frames": schema.Integer, "big": schema.Integer, "price": schema.Numeric, "done": schema.Boolean,
		"started_at": schema.Timestamp, "meta": schema.JSON, "raw": schema.Bytes,
	}
	if len(obs.Columns) != len(kinds) {
		t.Errorf("obs has %d columns, want %d", len(obs.Columns), len(kinds))
	}
	for i, name := range []string{"id", "target", "code", "exposure", "frames", "big", "price", "done", "started_at", "meta", "raw"} {
		if i < len(obs.Columns) && obs.Columns[i].Name != name {
			t.Errorf("obs column %d is %q, want %q (catalog order)", i, obs.Columns[i].Name, name)
		}
		c := obs.Column(name)
		if c == nil {
			t.Errorf("obs has no column %q", name)
			continue
		}
		if c.Kind != kinds[name] {
			t.Errorf("obs.%s (%s) kind %s, want %s", name, c.Type, c.Kind, kinds[name])
		}
		if c.PrimaryKey != (name == "id") {
			t.Errorf("obs.%s primary key = %v", name, c.PrimaryKey)
		}
	}
	if obs.Key == nil || obs.Key.Name != "id" || !obs.GeneratesKey() {
		t.Errorf("obs key = %+v, want id", obs.Key)
	}
	if c := obs.Column("target"); c != nil && !c.NotNull {
		t.Error("obs.target is not NOT NULL")
	}
	if c := obs.Column("exposure"); c != nil && (c.NotNull || c.HasDefault()) {
		t.Errorf("obs.exposure not null %v, default %q; want neither", c.NotNull, c.Default)
	}
	if c := obs.Column("frames"); c != nil && c.Default != "0" {
		t.Errorf("obs.frames default %q, want \"0\"", c.Default)
	}
	if k := f.table("counters").Key; k == nil || k.Name != "n" || k.Kind != schema.Integer {
		t.Errorf("counters key = %+v, want integer n", k)
	}
	if fr := f.table("frames"); fr.Column("obs_id") == nil || fr.Column("obs_id").Kind != schema.UUID || !fr.Column("obs_id").NotNull {
		t.Errorf("frames.obs_id = %+v, want uuid not null", fr.Column("obs_id"))
	}
	if r := f.table("readings"); r.Key != nil || r.Writable() == nil {
		t.Error("readings has no primary key but is writable")
	}
	pairs := f.table("pairs")
	if pairs.Key != nil || !pairs.Column("a").PrimaryKey || !pairs.Column("b").PrimaryKey || pairs.Column("label").PrimaryKey {
		t.Errorf("pairs: key %+v, a %v, b %v; want composite key (a, b) and no single key",
			pairs.Key, pairs.Column("a").PrimaryKey, pairs.Column("b").PrimaryKey)
	}
	kv := f.table("spool_kv")
	if kv.Key == nil || kv.Key.Name != "key" || kv.Column("updated_at") == nil || kv.Column("updated_at").Kind != schema.Timestamp {
		t.Errorf("spool_kv: key %+v, updated_at %+v; want key text, updated_at timestamp", kv.Key, kv.Column("updated_at"))
	}
	for _, internal := range []string{"spool_applied", "spool_dead_letters", "spool_migrations", "spool_fence", "spool_log_heads"} {
		if _, err := f.cat.Table(internal); !errors.Is(err, schema.ErrUnknownTable) {
			t.Errorf("catalog shows internal table %s (err %v)", internal, err)
		}
	}
}

func testExecError(t *testing.T, f *fixture) {
	if err := f.s.Exec(f.ctx, "create table obs (id text primary key)"); err == nil {
		t.Fatal("creating obs twice: no error")
	}
	if err := f.s.Exec(f.ctx, "this is not sql"); err == nil {
		t.Fatal("exec of nonsense: no error")
	}
}

func testRoundTrip(t *testing.T, f *fixture) {
	a, b, c := txn.NewID(), txn.NewID(), txn.NewID()
	f.mustApply(tx(insertObs(a, fullObs(a))), tx(insertObs(b, schema.Row{"target": "M42"})))
	f.wantRow("obs", a, fullObs(a))
	f.wantRow("obs", b, emptyObs(b, "M42"))

	change := schema.Row{"exposure": 60.25, "meta": nil, "done": false, "started_at": "1999-12-31T23:59:59.000001000Z"}
	later := "2025-01-02T03:04:05.000000000Z"
	f.mustApply(
		tx(update("obs", a, change)),
		tx(update("obs", a, nil)), // no values: checks the row exists, changes nothing
		tx(upsert("obs", "id", b, b, schema.Row{"target": "M51", "price": json.Number("-3.25")})),
		tx(upsert("obs", "id", c, c, schema.Row{"target": "M1", "started_at": later})),
	)
	f.wantRow("obs", a, merge(fullObs(a), change))
	f.wantRow("obs", b, merge(emptyObs(b, "M42"), schema.Row{"target": "M51", "price": json.Number("-3.25")}))
	f.wantRow("obs", c, merge(emptyObs(c, "M1"), schema.Row{"started_at": later}))

	f.mustApply(tx(del("obs", b)))
	f.wantNoRow("obs", b)
	f.wantRow("obs", a, merge(fullObs(a), change))
}

// testLogRoundTrip applies a transaction as it comes out of the log after a
// JSON round trip: numbers as json.Number, bytes as base64 text, JSON as
// decoded objects. The store normalises them and the row reads back in
// canonical form.
func testLogRoundTrip(t *testing.T, f *fixture) {
	id := txn.NewID()
	body, err := json.Marshal(tx(insertObs(id, fullObs(id))))
	if err != nil {
		t.Fatal(err)
	}
	var decoded txn.Transaction
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&decoded); err != nil {
		t.Fatal(err)
	}
	if _, ok := decoded.Operations[0].Values["raw"].(string); !ok {
		t.Fatalf("raw after JSON is %T, want base64 string", decoded.Operations[0].Values["raw"])
	}
	f.mustApply(&decoded)
	f.wantRow("obs", id, fullObs(id))
}

func testMultiOperation(t *testing.T, f *fixture) {
	o, fr, gone := txn.NewID(), txn.NewID(), txn.NewID()
	f.mustApply(tx(
		insertObs(o, schema.Row{"target": "M33"}),
		insert("frames", "id", fr, fr, schema.Row{"obs_id": o, "n": int64(1)}),
		update("frames", fr, schema.Row{"n": int64(2)}),
		update("obs", o, schema.Row{"frames": int64(1)}),
		insertObs(gone, schema.Row{"target": "M87"}),
		del("obs", gone),
	))
	f.wantRow("obs", o, merge(emptyObs(o, "M33"), schema.Row{"frames": int64(1)}))
	f.wantRow("frames", fr, schema.Row{"id": fr, "obs_id": o, "n": int64(2)})
	f.wantNoRow("obs", gone)
}

func testIntegerKey(t *testing.T, f *fixture) {
	f.mustApply(
		tx(insert("counters", "n", "7", int64(7), schema.Row{"label": "seven"})),
		tx(upsert("counters", "n", "8", int64(8), schema.Row{"label": "eight"})),
	)
	f.wantRow("counters", "7", schema.Row{"n": int64(7), "label": "seven"})
	f.mustApply(
		tx(update("counters", "7", schema.Row{"label": "sept"})),
		tx(upsert("counters", "n", "8", int64(8), schema.Row{"label": "huit"})),
	)
	f.wantRow("counters", "7", schema.Row{"n": int64(7), "label": "sept"})
	f.wantRow("counters", "8", schema.Row{"n": int64(8), "label": "huit"})
	f.mustApply(tx(del("counters", "7")))
	f.wantNoRow("counters", "7")
}

// testKV writes spool's key-value table through the normal path.
func testKV(t *testing.T, f *fixture) {
	at := "2024-02-29T12:00:00.500000000Z"
	f.mustApply(tx(insert("spool_kv", "key", "greeting", "greeting", schema.Row{"value": "hello", "updated_at": at})))
	f.wantRow("spool_kv", "greeting", schema.Row{"key": "greeting", "value": "hello", "updated_at": at})
	f.mustApply(tx(upsert("spool_kv", "key", "greeting", "greeting", schema.Row{"value": "bye"})))
	f.wantRow("spool_kv", "greeting", schema.Row{"key": "greeting", "value": "bye", "updated_at": at})
}

// testConcurrent applies batches from several goroutines while others read:
// every row lands, and reads never fail.
func testConcurrent(t *testing.T, f *fixture) {
	const writers, batches, size = 4, 5, 20
	obs := f.table("obs")
	q := &query.Query{Table: obs, Order: []query.Order{{Column: obs.Key}}}
	var writing, reading sync.WaitGroup
	errs := make(chan error, writers*2)
	stop := make(chan struct{})
	for range writers {
		writing.Go(func() {
			for range batches {
				batch := make([]*txn.Transaction, size)
				for i := range batch {
					batch[i] = tx(insertObs(txn.NewID(), schema.Row{"target": "M31"}))
				}
				out, err := f.s.ApplyBatch(f.ctx, batch, nil)
				if err != nil {
					errs <- err
					return
				}
				for _, o := range out {
					if o.Err != nil || o.Duplicate {
						errs <- fmt.Errorf("outcome %+v, want applied", o)
						return
					}
				}
			}
		})
		reading.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.s.Query(f.ctx, q, 10); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	writing.Wait()
	close(stop)
	reading.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rows, err := f.s.Query(f.ctx, q, query.MaxLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != writers*batches*size {
		t.Errorf("%d rows, want %d", len(rows), writers*batches*size)
	}
}
