package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

func catalog() *schema.Catalog {
	obs := schema.NewTable("obs", []*schema.Column{
		{Name: "id", Type: "uuid", Kind: schema.UUID, NotNull: true},
		{Name: "target", Type: "text", Kind: schema.Text, NotNull: true},
		{Name: "status", Type: "text", Kind: schema.Text, Default: "'planned'"},
		{Name: "frames", Type: "integer", Kind: schema.Integer},
	}, []string{"id"})
	frames := schema.NewTable("frames", []*schema.Column{
		{Name: "id", Type: "uuid", Kind: schema.UUID},
		{Name: "obs_id", Type: "uuid", Kind: schema.UUID},
	}, []string{"id"})
	counters := schema.NewTable("counters", []*schema.Column{
		{Name: "n", Type: "integer", Kind: schema.Integer},
	}, []string{"n"})
	pairs := schema.NewTable("pairs", []*schema.Column{
		{Name: "a", Type: "integer", Kind: schema.Integer},
		{Name: "b", Type: "integer", Kind: schema.Integer},
	}, []string{"a", "b"})
	return schema.NewCatalog([]*schema.Table{obs, frames, counters, pairs})
}

func parseReq(t *testing.T, body string) *Request {
	t.Helper()
	var r Request
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestResolve(t *testing.T) {
	t.Parallel()
	req := parseReq(t, `{"operations":[
		{"op":"insert","table":"obs","values":{"target":"m31","frames":3},"as":"o"},
		{"op":"insert","table":"frames","values":{"obs_id":{"$ref":"o"}}},
		{"op":"update","table":"obs","id":{"$ref":"o"},"values":{"frames":4}},
		{"op":"insert","table":"counters","values":{"n":7}}]}`)
	tx, rc, err := resolve(catalog(), req, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.IDs) != 4 || rc.Refs["o"] != rc.IDs[0] || !txn.ValidID(rc.IDs[0]) || rc.IDs[2] != rc.IDs[0] || rc.IDs[3] != "7" {
		t.Fatalf("receipt %+v", rc)
	}
	ins := tx.Operations[0]
	if ins.Values["id"] != ins.ID || ins.Values["status"] != "planned" || ins.Values["frames"] != int64(3) {
		t.Fatalf("insert values %v: want generated id, literal default and int64", ins.Values)
	}
	if tx.Operations[1].Values["obs_id"] != ins.ID {
		t.Fatalf("$ref not resolved: %v", tx.Operations[1].Values)
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		`{"operations":[]}`:                                                                                                                              "at least one operation",
		`{"operations":[{"op":"merge","table":"obs"}]}`:                                                                                                  `unknown op "merge"`,
		`{"operations":[{"op":"insert","table":"nope","values":{}}]}`:                                                                                    `unknown table "nope"`,
		`{"operations":[{"op":"insert","table":"obs","values":{"target":"x","bad":1}}]}`:                                                                 `column "bad" of table "obs": no such column`,
		`{"operations":[{"op":"insert","table":"obs","values":{"target":5}}]}`:                                                                           `must be a string`,
		`{"operations":[{"op":"insert","table":"obs","values":{}}]}`:                                                                                     `"target" of table "obs": is NOT NULL`,
		`{"operations":[{"op":"insert","table":"counters","values":{}}]}`:                                                                                `cannot generate`,
		`{"operations":[{"op":"insert","table":"pairs","values":{"a":1,"b":2}}]}`:                                                                        `no single-column primary key`,
		`{"operations":[{"op":"insert","table":"frames","values":{"obs_id":{"$ref":"x"}}}]}`:                                                             `unknown $ref "x"`,
		`{"operations":[{"op":"update","table":"obs","values":{"frames":1}}]}`:                                                                           `needs the id`,
		`{"operations":[{"op":"update","table":"obs","id":"nope","values":{"frames":1}}]}`:                                                               `UUID`,
		`{"operations":[{"op":"delete","table":"obs","id":"0190b5a0-0000-7000-8000-000000000000","values":{"frames":1}}]}`:                               `takes no values`,
		`{"operations":[{"op":"insert","table":"obs","values":{"target":"a"},"as":"o"},{"op":"insert","table":"obs","values":{"target":"b"},"as":"o"}]}`: `alias "o" is already used`,
		`{"operations":[{"op":"insert","table":"obs","values":{"target":"a"},"as":"o"},{"op":"delete","table":"frames","id":{"$ref":"o"}}]}`:             `is a row of table "obs"`,
	}
	for body, want := range cases {
		_, _, err := resolve(catalog(), parseReq(t, body), time.Now())
		ie, ok := err.(*txn.InputError)
		if !ok || ie.Kind != txn.ErrInvalid || !strings.Contains(ie.Msg, want) {
			t.Errorf("%s\n  = %v; want a 400 containing %q", body, err, want)
		}
	}
}

// FuzzResolve feeds arbitrary request bodies through the decoder and the
// resolver: they never panic, a refusal is an InputError naming a 4xx, and
// an accepted transaction has an id per operation and values its columns
// take.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		`{"operations":[{"op":"insert","table":"obs","values":{"target":"m31","frames":3},"as":"o"},{"op":"insert","table":"frames","values":{"obs_id":{"$ref":"o"}}}]}`,
		`{"operations":[{"op":"update","table":"obs","id":"0190b5a0-0000-7000-8000-000000000000","values":{"frames":1}}]}`,
		`{"operations":[{"op":"delete","table":"counters","id":7}]}`,
		`{"operations":[]}`, `{}`, `[]`, `{"operations":[{"op":"upsert","table":"counters","values":{"n":1}}]}`,
	} {
		f.Add(s)
	}
	cat := catalog()
	f.Fuzz(func(t *testing.T, body string) {
		var req Request
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber()
		if dec.Decode(&req) != nil {
			return
		}
		tx, rc, err := resolve(cat, &req, time.Now())
		if err != nil {
			ie, ok := err.(*txn.InputError)
			if !ok || ie.Kind == nil || ie.Msg == "" {
				t.Fatalf("refusal %v (%T) is not a 4xx naming the problem", err, err)
			}
			return
		}
		if len(tx.Operations) != len(req.Operations) || len(rc.IDs) != len(req.Operations) {
			t.Fatalf("%d operations, %d ids for %d requested", len(tx.Operations), len(rc.IDs), len(req.Operations))
		}
		for i, op := range tx.Operations {
			tb, err := cat.Table(op.Table)
			if err != nil || op.ID == "" {
				t.Fatalf("operation %d: table %q, id %q", i, op.Table, op.ID)
			}
			for name, v := range op.Values {
				if _, err := tb.Column(name).Normalize(v); err != nil {
					t.Fatalf("operation %d: column %s holds %v, which it does not take: %v", i, name, v, err)
				}
			}
		}
	})
}
