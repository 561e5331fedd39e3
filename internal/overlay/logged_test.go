package overlay

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/filelog"
	"github.com/spoolgw/spool/internal/txn"
)

// catalogT is a live catalog of table t (id text, x integer).
func catalogT(t *testing.T) *schema.Live {
	t.Helper()
	tbl := schema.NewTable("t", []*schema.Column{
		{Name: "id", Type: "text", Kind: schema.Text, PrimaryKey: true},
		{Name: "x", Type: "integer", Kind: schema.Integer},
	}, []string{"id"})
	cat, err := schema.NewLive(ctx, func(context.Context) (*schema.Catalog, error) { return schema.NewCatalog([]*schema.Table{tbl}), nil })
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// refusing is a log whose appends fail.
type refusing struct{ txlog.Log }

func (refusing) Append(context.Context, *txn.Transaction) (txlog.Entry, error) {
	return txlog.Entry{}, errors.New("disk full")
}

// A write through Logged is in the overlay once Append returns; a write
// the log refuses leaves nothing there.
func TestLoggedAppend(t *testing.T) {
	lg, err := filelog.Open(filepath.Join(t.TempDir(), "log"), filelog.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	ov := New()
	l, n, err := NewLogged(ctx, lg, ov, catalogT(t), nil)
	if err != nil || n != 0 {
		t.Fatalf("NewLogged over an empty log: %d, %v", n, err)
	}
	if _, err := l.Append(ctx, tx("a", op(txn.Insert, "1", schema.Row{"id": "1", "x": int64(1)}))); err != nil {
		t.Fatal(err)
	}
	if has, _ := ov.Has(ctx, "a"); !has {
		t.Fatal("an acknowledged write is not in the overlay")
	}

	bad, _, err := NewLogged(ctx, refusing{lg}, New(), catalogT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Append(ctx, tx("b", op(txn.Insert, "2", schema.Row{"id": "2"}))); err == nil {
		t.Fatal("a refused append succeeded")
	}
	if has, _ := bad.Overlay().Has(ctx, "b"); has {
		t.Fatal("a refused write stayed in the overlay")
	}
}

// At start, what the log holds goes back into the overlay with canonical
// values; a transaction naming a table the catalog lacks stops the start.
func TestLoggedRebuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	lg, err := filelog.Open(dir, filelog.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := lg.Append(ctx, tx(id, op(txn.Insert, id, schema.Row{"id": id, "x": int64(7)}))); err != nil {
			t.Fatal(err)
		}
	}
	lg.Close()
	if lg, err = filelog.Open(dir, filelog.Config{}, nil); err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	ov := New()
	_, n, err := NewLogged(ctx, lg, ov, catalogT(t), nil)
	if err != nil || n != 2 {
		t.Fatalf("rebuilt %d transactions, err %v; want 2", n, err)
	}
	p, _ := ov.Row(ctx, "t", "b")
	if len(p) != 1 || p[0].Values["x"] != int64(7) {
		t.Fatalf("row b rebuilt as %+v, want x the integer 7", p)
	}

	if _, err := lg.Append(ctx, &txn.Transaction{ID: "c", Operations: []txn.Operation{{Op: txn.Insert, Table: "gone", ID: "1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := NewLogged(ctx, lg, New(), catalogT(t), nil); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("a transaction on an unknown table: %v", err)
	}
}
