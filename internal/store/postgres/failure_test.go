package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/store/storetest"
	"github.com/spoolgw/spool/internal/txn"
)

// hookGate admits everything, runs onAdmit first, and carries a lease.
type hookGate struct {
	log     string
	token   int64
	onAdmit func(tx *txn.Transaction)
}

func (g *hookGate) Admit(tx *txn.Transaction) error {
	if g.onAdmit != nil {
		g.onAdmit(tx)
	}
	return nil
}
func (g *hookGate) Failed(*txn.Transaction, error) {}
func (g *hookGate) Fence() (string, int64)         { return g.log, g.token }
func (g *hookGate) once(f func(tx *txn.Transaction)) *hookGate {
	var o sync.Once
	g.onAdmit = func(tx *txn.Transaction) { o.Do(func() { f(tx) }) }
	return g
}

// wantNothing fails unless no transaction of batch was applied or
// dead-lettered and none of its obs rows exists.
func wantNothing(t *testing.T, s *Store, batch []*txn.Transaction) {
	t.Helper()
	obs := table(t, s, "obs")
	for _, tx := range batch {
		if _, ok, err := s.Applied(t.Context(), tx.ID); ok || err != nil {
			t.Errorf("transaction %s applied (%v)", tx.ID, err)
		}
		if _, err := s.DeadLetter(t.Context(), tx.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("transaction %s dead-lettered (%v)", tx.ID, err)
		}
		if row, ok, _ := s.Get(t.Context(), obs, tx.Operations[0].ID); ok {
			t.Errorf("row %v exists", row)
		}
	}
}

func wantAll(t *testing.T, s *Store, batch []*txn.Transaction) {
	t.Helper()
	obs := table(t, s, "obs")
	for _, tx := range batch {
		if _, ok, err := s.Applied(t.Context(), tx.ID); !ok || err != nil {
			t.Errorf("transaction %s not applied (%v)", tx.ID, err)
		}
		if _, ok, err := s.Get(t.Context(), obs, tx.Operations[0].ID); !ok || err != nil {
			t.Errorf("row of %s missing (%v)", tx.ID, err)
		}
	}
}

func obsBatch(n int) []*txn.Transaction {
	batch := make([]*txn.Transaction, n)
	for i := range batch {
		batch[i] = obsTx(txn.NewID())
	}
	return batch
}

// TestTerminatedMidBatch kills the store's backend from a second
// connection in the middle of a batch, on the fast path and on the slow
// path: the batch fails with a transient error, nothing of it is
// committed, and it applies when run again.
func TestTerminatedMidBatch(t *testing.T) {
	t.Parallel()
	s, url := setup(t)
	s.noLean = true // the gate is asked once the transaction has begun
	ctx := t.Context()
	admin := connect(t, url)
	terminate := func(*txn.Transaction) {
		tag, err := admin.Exec(ctx, `select pg_terminate_backend(pid) from pg_stat_activity
			where datname = current_database() and application_name = 'spool' and state like 'idle in transaction%'`)
		if err != nil || tag.RowsAffected() != 1 {
			t.Errorf("terminate the store's backend: %v, %v", tag, err)
		}
	}
	taken := txn.NewID()
	storetest.MustApply(t, s, obsTx(taken, "code", "taken"))
	for _, slow := range []bool{false, true} {
		batch := obsBatch(20)
		if slow { // a permanent failure sends the batch down the slow path
			batch[10] = obsTx(txn.NewID(), "code", "taken")
		}
		var admitted int
		g := &hookGate{}
		g.onAdmit = func(tx *txn.Transaction) {
			admitted++
			// The fast path asks about the whole batch before its second
			// pipeline; the slow path asks before each transaction.
			if (!slow && admitted == len(batch)) || (slow && admitted == len(batch)+15) {
				terminate(tx)
			}
		}
		out, err := s.ApplyBatch(ctx, batch, g)
		if err == nil {
			t.Fatalf("slow path %v: batch on a terminated connection: %+v, no error", slow, out)
		}
		if _, permanent := classify(err); permanent {
			t.Fatalf("slow path %v: %v classified permanent", slow, err)
		}
		wantNothing(t, s, batch)
		out, err = s.ApplyBatch(ctx, batch, nil)
		if err != nil {
			t.Fatalf("slow path %v: run again: %v", slow, err)
		}
		for i, o := range out {
			if (o.Err != nil) != (slow && i == 10) || o.Duplicate {
				t.Errorf("slow path %v: transaction %d: %+v", slow, i, o)
			}
		}
	}
}

// TestPrimaryRestart stops the primary under the store and starts it
// again. It does not run in parallel: every other test needs the primary.
func TestPrimaryRestart(t *testing.T) {
	s, _ := setup(t)
	ctx := t.Context()
	storetest.MustApply(t, s, obsBatch(3)...)
	if err := pg.StopPrimary(); err != nil {
		t.Fatalf("stop primary: %v", err)
	}
	restarted := false
	defer func() {
		if !restarted {
			pg.StartPrimary() //nolint:errcheck // best effort for the tests after this one
		}
	}()
	batch := obsBatch(10)
	for range 2 { // an idle connection of the pool, then a new one
		out, err := s.ApplyBatch(ctx, batch, nil)
		if err == nil {
			t.Fatalf("apply with the primary down: %+v, no error", out)
		}
		if _, permanent := classify(err); permanent {
			t.Fatalf("%v classified permanent", err)
		}
	}
	if err := pg.StartPrimary(); err != nil {
		t.Fatalf("start primary: %v", err)
	}
	restarted = true
	// As the applier does: retry until it applies; every failure on the way
	// must be transient.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := s.ApplyBatch(ctx, batch, nil)
		if err == nil {
			for i, o := range out {
				if o.Err != nil || o.Duplicate {
					t.Fatalf("transaction %d: %+v", i, o)
				}
			}
			break
		}
		if _, permanent := classify(err); permanent {
			t.Fatalf("after restart: %v classified permanent", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 30s after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantAll(t, s, batch)
}

// TestFencingTwoStores runs two appliers of one log, on two stores, with
// tokens 1 and 2. Whichever holds the fence row makes the other wait; once
// the newer lease has committed, the older is fenced out, on the fast path
// that looks up earlier runs first and on the lean one.
func TestFencingTwoStores(t *testing.T) {
	t.Parallel()
	s2, url := setup(t) // the newer lease
	s1 := openStore(t, url)
	// The hooks below run from the gate once the fence row is held: the
	// lean path asks the gate before it sends anything, so these two
	// appliers look up earlier runs first, until the older turns lean.
	s1.noLean, s2.noLean = true, true
	ctx := t.Context()
	admin := connect(t, url)
	gate := func(token int64) *hookGate { return &hookGate{log: "site-a", token: token} }

	// waitBlocked waits until a backend of the test database waits on a
	// lock: the other applier is behind the fence row.
	waitBlocked := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var n int
			if err := admin.QueryRow(ctx, `select count(*) from pg_stat_activity
				where datname = current_database() and wait_event_type = 'Lock'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no applier waits on the fence")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// The older lease holds the fence first; the newer waits, then commits.
	release := make(chan struct{})
	inside := make(chan struct{})
	old1 := obsBatch(5)
	done := make(chan error, 1)
	go func() {
		_, err := s1.ApplyBatch(ctx, old1, gate(1).once(func(*txn.Transaction) { close(inside); <-release }))
		done <- err
	}()
	<-inside // s1 has recorded its token and holds the fence row
	new1 := obsBatch(5)
	newDone := make(chan error, 1)
	go func() {
		_, err := s2.ApplyBatch(ctx, new1, gate(2))
		newDone <- err
	}()
	waitBlocked()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("older lease, committing first: %v", err)
	}
	if err := <-newDone; err != nil {
		t.Fatalf("newer lease, after the older: %v", err)
	}
	wantAll(t, s1, append(old1, new1...))

	// The newer lease holds the fence; the older waits behind it and is
	// fenced out once the newer commits.
	release = make(chan struct{})
	inside = make(chan struct{})
	new2 := obsBatch(5)
	go func() {
		_, err := s2.ApplyBatch(ctx, new2, gate(2).once(func(*txn.Transaction) { close(inside); <-release }))
		newDone <- err
	}()
	<-inside // s2 has recorded its token and holds the fence row
	// The older applier now sends its batch in one pipeline, fence check
	// and commit included: it waits on the row all the same, and the check
	// fails it once the newer has committed.
	s1.noLean = false
	old2 := obsBatch(5)
	go func() {
		_, err := s1.ApplyBatch(ctx, old2, gate(1))
		done <- err
	}()
	// s1 waits on the fence row that s2 updated.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := admin.QueryRow(ctx, `select count(*) from pg_stat_activity
			where datname = current_database() and wait_event_type = 'Lock' and query like 'insert into spool_fence%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the older applier does not wait on the fence")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if err := <-newDone; err != nil {
		t.Fatalf("newer lease: %v", err)
	}
	if err := <-done; !errors.Is(err, store.ErrFenced) {
		t.Fatalf("older lease after the newer committed: %v, want ErrFenced", err)
	}
	wantAll(t, s2, new2)
	wantNothing(t, s1, old2)
	if _, err := s1.ApplyBatch(ctx, old2, gate(1)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("older lease again: %v, want ErrFenced", err)
	}
}

// TestConcurrentDuplicates applies the same batches from two stores at
// once, without a lease: each transaction is applied by exactly one of
// them, and is a duplicate to the other.
func TestConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	a, url := setup(t)
	b := openStore(t, url)
	ctx := t.Context()
	for round := range 5 {
		batch := obsBatch(50)
		outs := make([][]store.Outcome, 2)
		var wg sync.WaitGroup
		for i, s := range []*Store{a, b} {
			wg.Go(func() {
				out, err := s.ApplyBatch(ctx, batch, nil)
				if err != nil {
					t.Errorf("round %d, store %d: %v", round, i, err)
				}
				outs[i] = out
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for k := range batch {
			o1, o2 := outs[0][k], outs[1][k]
			if o1.Err != nil || o2.Err != nil || o1.Duplicate == o2.Duplicate {
				t.Fatalf("round %d, transaction %d: outcomes %+v and %+v, want one applied and one duplicate", round, k, o1, o2)
			}
		}
		wantAll(t, a, batch)
	}
}

// TestCancelledContext: a batch whose context ends is a transient failure.
func TestCancelledContext(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	batch := obsBatch(3)
	if _, err := s.ApplyBatch(ctx, batch, nil); err == nil {
		t.Fatal("apply with a cancelled context: no error")
	} else if _, permanent := classify(err); permanent {
		t.Fatalf("%v classified permanent", err)
	}
	wantNothing(t, s, batch)
}

// TestClosed: a closed store fails batches with a transient error, never
// with a dead letter.
func TestClosed(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := s.ApplyBatch(t.Context(), obsBatch(1), nil)
	if err == nil {
		t.Fatalf("apply on a closed store: %+v, no error", out)
	}
	if _, permanent := classify(err); permanent {
		t.Fatalf("%v classified permanent", err)
	}
}

// TestLeanPath runs batches on the fast path's one round trip alone: a
// new batch commits in it; a batch run before, applied or dead-lettered,
// fails it with errLookupFirst and nothing of it is written, and
// ApplyBatch then finds each transaction's fate by looking it up; a lease
// older than the fence's is fenced out.
func TestLeanPath(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	lean := func(batch []*txn.Transaction, g store.Gate) ([]store.Outcome, error) {
		return s.attempt(ctx, pc.Conn(), batch, g, pathLean, nil)
	}

	batch := obsBatch(5)
	out, err := lean(batch, nil)
	if err != nil {
		t.Fatalf("a new batch on the lean path: %v", err)
	}
	for i, o := range out {
		if o.Err != nil || o.Duplicate || o.LSN == 0 {
			t.Errorf("transaction %d: %+v, want applied with a commit position", i, o)
		}
	}
	wantAll(t, s, batch)

	more := obsBatch(2)
	if _, err := lean(append(more, batch[3]), nil); !errors.Is(err, errLookupFirst) {
		t.Fatalf("a batch with an applied transaction: %v, want errLookupFirst", err)
	}
	wantNothing(t, s, more)
	out, err = s.ApplyBatch(ctx, append(more, batch[3]), nil)
	if err != nil || out[0].Err != nil || out[1].Err != nil || !out[2].Duplicate {
		t.Fatalf("the same through ApplyBatch: %+v, %v; want two applied and a duplicate", out, err)
	}

	taken := obsTx(txn.NewID(), "code", "taken")
	storetest.MustApply(t, s, taken)
	dead := obsTx(txn.NewID(), "code", "taken")
	if out, err := s.ApplyBatch(ctx, []*txn.Transaction{dead}, nil); err != nil || out[0].Err == nil {
		t.Fatalf("a unique violation: %+v, %v; want it dead-lettered", out, err)
	}
	fresh := obsBatch(1)
	if _, err := lean(append(fresh, dead), nil); !errors.Is(err, errLookupFirst) {
		t.Fatalf("a batch with a dead letter: %v, want errLookupFirst", err)
	}
	wantNothing(t, s, fresh)
	out, err = s.ApplyBatch(ctx, append(fresh, dead), nil)
	var prior *priorFailure
	if err != nil || out[0].Err != nil || !errors.As(out[1].Err, &prior) {
		t.Fatalf("the same through ApplyBatch: %+v, %v; want applied, then the earlier failure", out, err)
	}

	newer := &hookGate{log: "lean", token: 2}
	if _, err := lean(obsBatch(1), newer); err != nil {
		t.Fatal(err)
	}
	older := obsBatch(1)
	if _, err := lean(older, &hookGate{log: "lean", token: 1}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("an older lease: %v, want ErrFenced", err)
	}
	wantNothing(t, s, older)

	// A transaction the gate refuses may be one run before, which the
	// lookup never asks the gate about: the lean path tells the gate
	// nothing and gives way.
	refused := obsBatch(2)
	g := &refuseGate{refuse: refused[1].ID, log: "lean", token: 2}
	if _, err := lean(refused, g); !errors.Is(err, errLookupFirst) || g.failed != nil {
		t.Fatalf("a refusal on the lean path: %v, failures told %v; want errLookupFirst and none", err, g.failed)
	}
	wantNothing(t, s, refused)
	out, err = s.ApplyBatch(ctx, refused, g)
	if err != nil || out[0].Err != nil || out[1].Err == nil || len(g.failed) != 1 {
		t.Fatalf("the same through ApplyBatch: %+v, %v, failures told %v; want applied, then refused", out, err, g.failed)
	}
}

// refuseGate refuses one transaction and records the failures it is told.
type refuseGate struct {
	refuse string
	failed []string
	log    string
	token  int64
}

func (g *refuseGate) Admit(tx *txn.Transaction) error {
	if tx.ID == g.refuse {
		return errors.New("refused by the test")
	}
	return nil
}

func (g *refuseGate) Failed(tx *txn.Transaction, _ error) { g.failed = append(g.failed, tx.ID) }
func (g *refuseGate) Fence() (string, int64)              { return g.log, g.token }
