package idempotency

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/leakcheck"
	"github.com/spoolgw/spool/internal/txn"
)

func TestMain(m *testing.M) { leakcheck.Main(m, nil) }

func keyedTx(key string) *txn.Transaction {
	return &txn.Transaction{ID: txn.NewID(), Idempotency: &txn.Idempotency{Key: key, Record: []byte(`{"tx":"` + key + `"}`)}}
}

// A key is found while its transaction is held, after it is persisted,
// across a reopen, and not once its retention has passed.
func TestLocalKeys(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	now := time.Now()
	clock := func() time.Time { return now }
	l, err := Open(ctx, path, time.Hour, clock)
	if err != nil {
		t.Fatal(err)
	}
	a, b := keyedTx("a"), keyedTx("b")
	l.Hold(a)
	if rec, ok, err := l.LookupKey(ctx, "a"); err != nil || !ok || string(rec) != `{"tx":"a"}` {
		t.Fatalf("held key: %s %v %v", rec, ok, err)
	}
	if _, ok, _ := l.LookupKey(ctx, "b"); ok {
		t.Fatal("a key nobody took was found")
	}
	if err := l.Persist(ctx, []*txn.Transaction{a, b, {ID: txn.NewID()}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if l, err = Open(ctx, path, time.Hour, clock); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, k := range []string{"a", "b"} {
		if _, ok, err := l.LookupKey(ctx, k); err != nil || !ok {
			t.Fatalf("persisted key %s after a reopen: %v %v", k, ok, err)
		}
	}
	now = now.Add(2 * time.Hour)
	if _, ok, _ := l.LookupKey(ctx, "a"); ok {
		t.Fatal("a key past its retention was found")
	}
	if err := l.Persist(ctx, []*txn.Transaction{keyedTx("c")}); err != nil { // prunes
		t.Fatal(err)
	}
	var n int
	if err := l.db.QueryRowContext(ctx, `select count(*) from spool_keys`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d keys after the prune, %v; want only c", n, err)
	}
}
