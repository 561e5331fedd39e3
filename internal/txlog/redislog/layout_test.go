package redislog

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spoolgw/spool/internal/overlay"
	"github.com/spoolgw/spool/internal/txn"
)

// toLayout1 turns l's overlay back into the layout spool wrote before the
// tables' lists of changes: per table a set of the keys of its pending
// rows, no list, no counters, no layout key. The rows' lists, the transactions' hashes
// and the counters are the same in both.
func toLayout1(t *testing.T, l *Log) {
	t.Helper()
	ctx := testCtx(t)
	tables, err := l.client.SMembers(ctx, l.keys.tables).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		elems, err := l.client.LRange(ctx, l.keys.ops(table), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range elems {
			_, key, _ := splitElement(e)
			if err := l.client.SAdd(ctx, l.keys.prefix+"tbl:"+table, key).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.client.Del(ctx, l.keys.ops(table), l.keys.seq(table)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.client.Del(ctx, l.keys.layout).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenMigratesLayout1: a log whose overlay spool wrote before the
// tables' lists of changes reads the same once reopened, evicts to nothing
// (no set of the old layout left behind), and is migrated once.
func TestOpenMigratesLayout1(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	ctx := testCtx(t)
	t1 := newTxn(op(txn.Insert, "t", "1", map[string]any{"v": 1}), op(txn.Insert, "t", "a:b\nc", map[string]any{"v": 1}))
	t2 := newTxn(op(txn.Update, "t", "1", map[string]any{"v": 2}), op(txn.Insert, "u", "9", map[string]any{"v": 9}))
	t3 := newTxn(op(txn.Delete, "t", "a:b\nc", nil), op(txn.Update, "t", "1", map[string]any{"v": 3}))
	for _, tx := range []*txn.Transaction{t1, t2, t3} {
		if _, err := l.Append(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{}
	for _, table := range []string{"t", "u"} {
		tbl, err := l.Overlay().Table(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		want[table] = pendingJSON(t, tbl)
	}
	wantStats, _ := l.Overlay().Stats(ctx)
	toLayout1(t, l)

	logger, logs := testLogger()
	m, err := Open(ctx, Config{URL: srv.URL, Name: l.cfg.Name, Consumer: "test"}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.Contains(logs.String(), `"changes":6`) {
		t.Fatalf("open after layout 1 logged %s; want the 6 changes moved", logs)
	}
	for table, w := range want {
		tbl, err := m.Overlay().Table(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		if g := pendingJSON(t, tbl); g != w {
			t.Fatalf("table %q after the migration\n got %s\nwant %s", table, g, w)
		}
	}
	if st, _ := m.Overlay().Stats(ctx); st != wantStats {
		t.Fatalf("stats after the migration %+v, before %+v", st, wantStats)
	}
	// A second open finds the layout current and moves nothing.
	logger2, logs2 := testLogger()
	again, err := Open(ctx, Config{URL: srv.URL, Name: l.cfg.Name, Consumer: "test"}, logger2)
	if err != nil {
		t.Fatal(err)
	}
	_ = again.Close()
	if strings.Contains(logs2.String(), "layout") {
		t.Fatalf("second open logged %s; want no migration", logs2)
	}
	if err := m.Overlay().Evict(ctx, t2.ID, t1.ID, t3.ID); err != nil {
		t.Fatal(err)
	}
	checkEmptied(t, m, "t", "u")
	if st, _ := m.Overlay().Stats(ctx); st != (overlay.Stats{}) {
		t.Fatalf("stats after evicting everything: %+v", st)
	}
}

// TestOpenRefusesLaterLayout: keys written by a later spool, or a layout
// key that holds no version, are refused, not misread.
func TestOpenRefusesLaterLayout(t *testing.T) {
	t.Parallel()
	l := openLog(t, Config{})
	ctx := testCtx(t)
	for _, tt := range []struct {
		value string
		want  error
	}{
		{fmt.Sprint(layoutVersion + 1), ErrLaterLayout},
		{"two", ErrCorrupt},
	} {
		if err := l.client.Set(ctx, l.keys.layout, tt.value, 0).Err(); err != nil {
			t.Fatal(err)
		}
		m, err := Open(ctx, Config{URL: srv.URL, Name: l.cfg.Name, Consumer: "test"}, nil)
		if err == nil {
			_ = m.Close()
		}
		if !errors.Is(err, tt.want) {
			t.Fatalf("open with layout %q: %v, want %v", tt.value, err, tt.want)
		}
	}
}
