package query

import (
	"net/url"
	"strings"
	"testing"

	"github.com/spoolgw/spool/internal/schema"
)

func table() *schema.Table {
	return schema.NewTable("obs", []*schema.Column{
		{Name: "id", Type: "uuid", Kind: schema.UUID, NotNull: true},
		{Name: "target", Type: "text", Kind: schema.Text},
		{Name: "frames", Type: "integer", Kind: schema.Integer},
		{Name: "done", Type: "boolean", Kind: schema.Boolean},
		{Name: "at", Type: "timestamptz", Kind: schema.Timestamp},
		{Name: "meta", Type: "jsonb", Kind: schema.JSON},
	}, []string{"id"})
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"nope=eq.1":          `unknown column "nope"`,
		"frames=like.1":      `unknown operator "like"`,
		"frames=eq.x":        `filter value for column "frames"`,
		"frames=5":           `must be op.value`,
		"limit=-1":           `limit must be`,
		"order=nope.desc":    `unknown column "nope" in order`,
		"order=frames.up":    `order direction`,
		"meta=eq.1":          `cannot be filtered`,
		"frames=in.1,2":      `must be in.(a,b`,
		"at=gt.yesterday":    `timestamp`,
		"done=eq.maybe":      `true or false`,
		"id=eq.not-a-uuid":   `UUID`,
		"limit=100000000000": `limit must be`,
	}
	for qs, want := range cases {
		params, _ := url.ParseQuery(qs)
		_, err := Parse(table(), params)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v; want an error containing %q", qs, err, want)
		}
	}
}

func TestMatchAndOrder(t *testing.T) {
	t.Parallel()
	params, _ := url.ParseQuery("frames=gte.2&frames=lt.10&target=in.(m31,m42)&done=is.null&order=frames.desc&limit=5")
	q, err := Parse(table(), params)
	if err != nil {
		t.Fatal(err)
	}
	if q.Limit != 5 || len(q.Order) != 2 || !q.Order[0].Desc || q.Order[1].Column.Name != "id" {
		t.Fatalf("parsed %+v", q)
	}
	rows := []struct {
		row  schema.Row
		want bool
	}{
		{schema.Row{"frames": int64(2), "target": "m31", "done": nil}, true},
		{schema.Row{"frames": int64(10), "target": "m31", "done": nil}, false},
		{schema.Row{"frames": int64(3), "target": "m1", "done": nil}, false},
		{schema.Row{"frames": int64(3), "target": "m42", "done": true}, false},
		{schema.Row{"frames": nil, "target": "m42", "done": nil}, false},
	}
	for _, r := range rows {
		if got := q.Match(r.row); got != r.want {
			t.Errorf("Match(%v) = %v, want %v", r.row, got, r.want)
		}
	}
	a, b := schema.Row{"frames": int64(3), "id": "1"}, schema.Row{"frames": int64(5), "id": "0"}
	if q.Less(a, b) <= 0 {
		t.Error("frames.desc must put 5 before 3")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"frames=eq.1", "target=in.(a,b)", "at=gt.2026-01-01T00:00:00Z&order=at.desc", "done=is.null", "limit=3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, qs string) {
		params, err := url.ParseQuery(qs)
		if err != nil {
			return
		}
		q, err := Parse(table(), params)
		if err != nil {
			return
		}
		q.Match(schema.Row{"frames": int64(1), "target": "x"}) // must not panic
	})
}
