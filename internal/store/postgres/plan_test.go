package postgres

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// The planner's tests need no database: the catalog is made up, and the
// statements of operations are built from it (ops.go never reaches the
// connection for a table the catalog holds).

// planStore is a store with a made-up catalog of one table, t (id uuid
// key, site text not null, n bigint), and no connection.
func planStore() *Store {
	cols := []*schema.Column{
		{Name: "id", Type: "uuid", Kind: schema.UUID, NotNull: true},
		{Name: "site", Type: "text", Kind: schema.Text, NotNull: true},
		{Name: "n", Type: "bigint", Kind: schema.Integer},
	}
	types := map[*schema.Column]string{cols[0]: "uuid", cols[1]: "text", cols[2]: "bigint"}
	s := &Store{}
	s.cat.Store(&catalog{cat: schema.NewCatalog([]*schema.Table{schema.NewTable("t", cols, []string{"id"})}), schema: "public", types: types})
	return s
}

// tid is the id of transaction n; rid the key of row n.
func tid(n int) string { return fmt.Sprintf("00000000-0000-7000-8000-%012d", n) }
func rid(n int) string { return fmt.Sprintf("00000000-0000-7000-9000-%012d", n) }

func ins(n, row int) *txn.Transaction {
	return &txn.Transaction{ID: tid(n), Operations: []txn.Operation{{Op: txn.Insert, Table: "t", ID: rid(row),
		Values: map[string]any{"id": rid(row), "site": "s", "n": int64(n)}}}}
}

func upd(n, row int) *txn.Transaction {
	return &txn.Transaction{ID: tid(n), Operations: []txn.Operation{{Op: txn.Update, Table: "t", ID: rid(row),
		Values: map[string]any{"n": int64(n)}}}}
}

func retry(t *txn.Transaction, of string) *txn.Transaction {
	t.RetryOf = of
	return t
}

// recGate records what it is asked and told, refuses the transactions in
// refuse, and carries a lease.
type recGate struct {
	refuse map[string]bool
	token  int64
	events []string
}

var _ store.Gate = (*recGate)(nil)

func (g *recGate) Admit(t *txn.Transaction) error {
	g.events = append(g.events, "admit "+short(t.ID))
	if g.refuse[t.ID] {
		return errors.New("refused")
	}
	return nil
}
func (g *recGate) Failed(t *txn.Transaction, _ error) {
	g.events = append(g.events, "failed "+short(t.ID))
}
func (g *recGate) Fence() (string, int64) { return "log", g.token }

func short(id string) string { return strings.TrimLeft(id[24:], "0") }

// label names a statement for the tables of tests: spool's own by what
// they do, an operation's by its verb and table; "(row)" marks one that
// must find its row.
func label(st stmt) string {
	own := map[string]string{
		sqlBegin: "begin", sqlImmediate: "immediate", sqlFence: "fence", sqlFenced: "fenced?",
		sqlDeadBefore: "dead before?", sqlLookup: "lookup", sqlRetryTargets: "retry targets",
		sqlMergeFacts: "merge facts", sqlRecordApplied: "record applied", sqlMarkAppliedOne: "record one",
		sqlDeadLetter: "dead letter", sqlMarkRetried: "link retry", sqlDropSuperseded: "drop superseded",
		sqlSavepoint: "savepoint", sqlRelease: "release", sqlRollbackTo: "rollback to",
	}
	if l, ok := own[st.sql]; ok {
		return l
	}
	var l string
	switch {
	case strings.Contains(st.sql, "unnest("):
		l = "unnest t"
	case strings.HasPrefix(st.sql, "insert into "):
		l = "insert t"
	case strings.HasPrefix(st.sql, "update "):
		l = "update t"
	case strings.HasPrefix(st.sql, "delete "):
		l = "delete t"
	default:
		l = st.sql
	}
	if st.check == checkRow {
		l += " (row)"
	}
	return l
}

func labels(stmts []stmt) []string {
	out := make([]string, len(stmts))
	for i, st := range stmts {
		out[i] = label(st)
	}
	return out
}

// fates summarises outcomes: ok, dup or the error.
func fates(out []store.Outcome) []string {
	f := make([]string, len(out))
	for i, o := range out {
		switch {
		case o.Err != nil:
			f[i] = "err"
		case o.Duplicate:
			f[i] = "dup"
		default:
			f[i] = "ok"
		}
	}
	return f
}

func TestPlanFast(t *testing.T) {
	t.Parallel()
	dead := tid(90)
	for _, tc := range []struct {
		name     string
		batch    []*txn.Transaction
		lk       *learned // nil: the lean path
		refuse   []int
		token    int64
		coalesce bool
		want     []string // the pipeline, after the lean head if any
		fates    []string
		gate     []string
		err      error
	}{{
		name:  "lean: single inserts merge into one unnest",
		batch: []*txn.Transaction{ins(1, 1), ins(2, 2), ins(3, 3)},
		want:  []string{"begin", "dead before?", "record applied", "unnest t"},
		fates: []string{"ok", "ok", "ok"},
		gate:  []string{"admit 1", "admit 2", "admit 3"},
	}, {
		name:  "lean: a lease is recorded and checked",
		batch: []*txn.Transaction{ins(1, 1)},
		token: 7,
		want:  []string{"begin", "fence", "fenced?", "dead before?", "record applied", "insert t"},
		fates: []string{"ok"},
		gate:  []string{"admit 1"},
	}, {
		name:   "lean: a refusal gives way to the lookup, the gate not told",
		batch:  []*txn.Transaction{ins(1, 1), ins(2, 2)},
		refuse: []int{2},
		gate:   []string{"admit 1", "admit 2"},
		err:    errLookupFirst,
	}, {
		name:   "a refusal is dead-lettered in the pipeline, the gate told at once",
		batch:  []*txn.Transaction{ins(1, 1), ins(2, 2), ins(3, 3)},
		lk:     &learned{},
		refuse: []int{2},
		want:   []string{"record applied", "unnest t", "dead letter"},
		fates:  []string{"ok", "err", "ok"},
		gate:   []string{"admit 1", "admit 2", "failed 2", "admit 3"},
	}, {
		name:  "applied before is a duplicate; dead-lettered before fails again",
		batch: []*txn.Transaction{ins(1, 1), ins(2, 2), ins(3, 3)},
		lk: &learned{applied: map[string]bool{tid(1): true},
			dead: map[string]error{tid(2): &priorFailure{id: tid(2), msg: "earlier"}}},
		want:  []string{"record applied", "insert t"},
		fates: []string{"dup", "err", "ok"},
		gate:  []string{"failed 2", "admit 3"},
	}, {
		name:  "a second copy in the batch is a duplicate",
		batch: []*txn.Transaction{ins(1, 1), ins(1, 1)},
		lk:    &learned{},
		want:  []string{"record applied", "insert t"},
		fates: []string{"ok", "dup"},
		gate:  []string{"admit 1"},
	}, {
		name:  "an update must find its row",
		batch: []*txn.Transaction{ins(1, 1), upd(2, 2)},
		lk:    &learned{},
		want:  []string{"record applied", "insert t", "update t (row)"},
		fates: []string{"ok", "ok"},
		gate:  []string{"admit 1", "admit 2"},
	}, {
		name:     "writes to one row coalesce into one insert",
		batch:    []*txn.Transaction{ins(1, 1), upd(2, 1), upd(3, 1)},
		lk:       &learned{},
		coalesce: true,
		want:     []string{"record applied", "insert t"},
		fates:    []string{"ok", "ok", "ok"},
		gate:     []string{"admit 1", "admit 2", "admit 3"},
	}, {
		name:  "without merge facts writes to one row run as written",
		batch: []*txn.Transaction{ins(1, 1), upd(2, 1)},
		lk:    &learned{},
		want:  []string{"record applied", "insert t", "update t (row)"},
		fates: []string{"ok", "ok"},
		gate:  []string{"admit 1", "admit 2"},
	}, {
		name:  "a retry of a dead letter retried already is superseded",
		batch: []*txn.Transaction{retry(ins(1, 1), dead)},
		lk:    &learned{retries: store.RetryTargets{dead: {RetriedAs: tid(91)}}},
		want:  []string{"dead letter", "drop superseded"},
		fates: []string{"err"},
	}, {
		name:  "a retry that runs links its dead letter",
		batch: []*txn.Transaction{retry(ins(1, 1), dead)},
		lk:    &learned{retries: store.RetryTargets{dead: {}}},
		want:  []string{"record applied", "insert t", "link retry"},
		fates: []string{"ok"},
		gate:  []string{"admit 1"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := planStore()
			b := &batchRun{s: s, sql: map[stmtKey]string{}, shapes: map[string]*insertShape{}}
			built, err := b.buildAll(t.Context(), tc.batch)
			if err != nil {
				t.Fatal(err)
			}
			g := &recGate{refuse: map[string]bool{}, token: tc.token}
			for _, n := range tc.refuse {
				g.refuse[tid(n)] = true
			}
			var rules func(string) *store.MergeRules
			if tc.coalesce {
				rules = mergeRules(s.cat.Load(), map[string]mergeFact{"t": {}})
			}
			lk := tc.lk
			if lk != nil {
				lk = &learned{applied: map[string]bool{}, dead: map[string]error{}, retries: store.RetryTargets{}}
				for id := range tc.lk.applied {
					lk.applied[id] = true
				}
				for id, err := range tc.lk.dead {
					lk.dead[id] = err
				}
				for id, r := range tc.lk.retries {
					lk.retries[id] = r
				}
			}
			p, err := planFast(tc.batch, built, lk, g, rules)
			if !slices.Equal(g.events, tc.gate) {
				t.Errorf("gate heard %q, want %q", g.events, tc.gate)
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("plan: %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if err := p.buildMerged(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			var head []stmt
			if tc.lk == nil {
				if head, err = leanHead(tc.batch, fenceOf(g)); err != nil {
					t.Fatal(err)
				}
			}
			stmts := p.pipeline(head)
			if got := labels(stmts); !slices.Equal(got, tc.want) {
				t.Errorf("pipeline %q, want %q", got, tc.want)
			}
			if got := fates(p.out); !slices.Equal(got, tc.fates) {
				t.Errorf("outcomes %q, want %q", got, tc.fates)
			}
			for _, st := range stmts {
				if st.sql == sqlRecordApplied {
					want := 0
					for _, f := range tc.fates {
						if f == "ok" {
							want++
						}
					}
					if n := strings.Count(st.args[0].(string), ",") + 1; n != want {
						t.Errorf("%d ids recorded (%s), want %d", n, st.args[0], want)
					}
				}
			}
		})
	}
}

// TestPlanCoalescedValues: the statement of a merged insert carries the
// union of its steps' values, the last value of each column.
func TestPlanCoalescedValues(t *testing.T) {
	t.Parallel()
	s := planStore()
	b := &batchRun{s: s, sql: map[stmtKey]string{}, shapes: map[string]*insertShape{}}
	batch := []*txn.Transaction{ins(1, 1), upd(2, 1), upd(3, 1)}
	built, err := b.buildAll(t.Context(), batch)
	if err != nil {
		t.Fatal(err)
	}
	p, err := planFast(batch, built, &learned{applied: map[string]bool{}, dead: map[string]error{}},
		nil, mergeRules(s.cat.Load(), map[string]mergeFact{"t": {}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.merges) != 1 || p.merges[0].at != 0 || p.body[0].sql != "" {
		t.Fatalf("merges %+v, body %+v: want one merge at 0, unbuilt", p.merges, p.body)
	}
	if err := p.buildMerged(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	st := p.body[0]
	if want := `insert into "public"."t" ("id", "n", "site") values ($1, $2, $3)`; st.sql != want {
		t.Errorf("merged %s, want %s", st.sql, want)
	}
	if len(st.args) != 3 || fmt.Sprint(st.args[1]) != "3" || fmt.Sprint(st.args[2]) != "s" {
		t.Errorf("merged values %v, want n = 3 and site s", st.args)
	}
}

// TestPlanOpening: the first pipeline of the fast and slow paths.
func TestPlanOpening(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		batch            []*txn.Transaction
		token            int64
		immediate, facts bool
		want             []string
	}{
		{"fast", []*txn.Transaction{ins(1, 1)}, 0, false, true, []string{"begin", "lookup"}},
		{"fast, a row twice", []*txn.Transaction{ins(1, 1), upd(2, 1)}, 0, false, true, []string{"begin", "lookup", "merge facts"}},
		{"fast, coalescing off", []*txn.Transaction{ins(1, 1), upd(2, 1)}, 0, false, false, []string{"begin", "lookup"}},
		{"slow, a lease and a retry", []*txn.Transaction{retry(ins(1, 1), tid(90)), upd(2, 1)}, 3, true, false,
			[]string{"begin", "immediate", "fence", "lookup", "retry targets"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := planOpening(tc.batch, &recGate{token: tc.token}, tc.immediate, tc.facts)
			if err != nil {
				t.Fatal(err)
			}
			if got := labels(o.stmts()); !slices.Equal(got, tc.want) {
				t.Errorf("opening %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPlanSlow: a transaction of the slow path, in its savepoint.
func TestPlanSlow(t *testing.T) {
	t.Parallel()
	b := &batchRun{s: planStore(), sql: map[stmtKey]string{}, shapes: map[string]*insertShape{}}
	tx := retry(upd(1, 1), tid(90))
	ops, fail, err := b.plan(t.Context(), tx)
	if err != nil || fail != nil {
		t.Fatal(err, fail)
	}
	for _, tc := range []struct {
		name        string
		held, fails bool
		want        []string
	}{
		{"first", false, false, []string{"savepoint", "record one", "update t (row)", "link retry"}},
		{"after another", true, false, []string{"release", "savepoint", "record one", "update t (row)", "link retry"}},
		{"failing after its operations", false, true, []string{"savepoint", "record one", "update t (row)"}},
	} {
		got := labels(append(slowHead(tc.held), slowBody(tx, ops, tc.fails)...))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if st := slowBody(tx, ops, false)[0]; st.check != checkCount || st.n != 1 {
		t.Errorf("the id is recorded with check %v of %d rows, want exactly 1", st.check, st.n)
	}
}

// TestLeanFailure: where the lean pipeline failed says what runs next.
func TestLeanFailure(t *testing.T) {
	t.Parallel()
	f := fence{log: "log", token: 2, ok: true}
	head, err := leanHead([]*txn.Transaction{ins(1, 1)}, f)
	if err != nil {
		t.Fatal(err)
	}
	stmts := append(head, stmt{sql: sqlRecordApplied, op: -1}, stmt{sql: "insert", op: 0})
	n := len(head)
	unique := &pgconn.PgError{Code: pgerrcode.UniqueViolation}
	for _, tc := range []struct {
		name string
		res  sendResult
		want error
	}{
		{"a newer lease", sendResult{at: 2, err: &pgconn.PgError{Code: pgerrcode.DivisionByZero}}, store.ErrFenced},
		{"a dead letter before", sendResult{at: 3, err: &pgconn.PgError{Code: pgerrcode.DivisionByZero}}, errLookupFirst},
		{"applied before", sendResult{at: n, err: unique}, errLookupFirst},
		{"a statement of the batch", sendResult{at: n + 1, err: unique}, errSlowPath},
		{"the commit", sendResult{at: len(stmts), err: unique}, errSlowPath},
	} {
		if got := leanFailure(tc.res, stmts, n, f); !errors.Is(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestLeanFits: a retry, or a row touched twice with coalescing on, starts
// on the fast path.
func TestLeanFits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		batch      []*txn.Transaction
		coalescing bool
		want       bool
	}{
		{"rows once", []*txn.Transaction{ins(1, 1), ins(2, 2)}, true, true},
		{"a row twice", []*txn.Transaction{ins(1, 1), upd(2, 1)}, true, false},
		{"a row twice, coalescing off", []*txn.Transaction{ins(1, 1), upd(2, 1)}, false, true},
		{"a retry", []*txn.Transaction{retry(ins(1, 1), tid(90))}, false, false},
	} {
		if got := leanFits(tc.batch, tc.coalescing); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
