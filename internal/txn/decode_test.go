package txn

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodeStd decodes as encoding/json does with UseNumber: what Decode
// must give for every transaction the logs hold.
func decodeStd(data []byte) (*Transaction, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tx Transaction
	if err := dec.Decode(&tx); err != nil {
		return nil, err
	}
	return &tx, nil
}

// Decode gives what encoding/json gives for any transaction encoding/json
// marshals, whatever its values hold.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 21, 0, 0, 123456789, time.FixedZone("x", 3600))
	txs := []Transaction{
		{},
		{ID: NewID(), CreatedAt: at, Operations: []Operation{}},
		{ID: NewID(), CreatedAt: at.UTC(), Principal: "token:ci", RetryOf: NewID(), Operations: []Operation{
			{Op: Insert, Table: "observations", ID: NewID(), Generated: true, As: "obs", Values: map[string]any{
				"target":     "M31 \"Andromeda\" \\ é \u2028 \x01",
				"exposure_s": json.Number("9007199254740993"),
				"ratio":      json.Number("-1.5e-300"),
				"ok":         true,
				"off":        false,
				"none":       nil,
				"meta":       map[string]any{"n": json.Number("7"), "tags": []any{"a", json.Number("1"), nil, map[string]any{}, []any{}}},
				"":           "empty name",
			}},
			{Op: Update, Table: "observations", ID: "obs-2", Values: map[string]any{}},
			{Op: Delete, Table: "t", ID: "3"},
		}},
		{ID: NewID(), Idempotency: &Idempotency{Key: "k1", Record: json.RawMessage(`{"status":201,"body":{"ids":["a"]}}`)},
			Operations: []Operation{{Op: Upsert, Table: "t", ID: "1", Values: map[string]any{"v": json.Number("0")}}}},
	}
	for i, tx := range txs {
		p, err := json.Marshal(tx)
		if err != nil {
			t.Fatal(err)
		}
		want, err := decodeStd(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(p)
		if err != nil {
			t.Fatalf("transaction %d: %v\n%s", i, err, p)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("transaction %d:\n got %#v\nwant %#v\nfrom %s", i, got, want, p)
		}
	}
}

// Decode reads what encoding/json reads the same way beyond what it
// writes: nulls, unknown fields, spaces.
func TestDecodeLenient(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"id":null,"operations":null,"created_at":null,"idempotency":null,"principal":null}`,
		` { "id" : "a" , "later" : {"x":[1,{"y":null}]}, "operations" : [ { "op" : "delete" , "table" : "t" , "id" : "1" , "values" : null , "generated" : null, "new": 1 } ] } `,
		`{"idempotency":{"key":"k","record":[1, 2],"other":"x"}}`,
	} {
		want, err := decodeStd([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %#v\nwant %#v", in, got, want)
		}
	}
}

// Decode refuses what is not a transaction's JSON, naming the field.
func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"id":`:                                "decode transaction",
		`[]`:                                    "transaction: an array, want an object",
		`{"id":5}`:                              "id: a number, want a string",
		`{"operations":{}}`:                     "operations: an object, want an array",
		`{"operations":[{"values":[1]}]}`:       "values: an array, want an object",
		`{"operations":[{"generated":"yes"}]}`:  "generated",
		`{"created_at":"yesterday"}`:            "created_at",
		`{"operations":[{"values":{"a":1,}}]}`:  "decode transaction",
		`{"id":"a"} trailing`:                   "", // one value read; what follows is not its business
		`{"idempotency":{"key":"k","record":}}`: "decode transaction",
		"{\"id\":\"\xff\"}":                     "decode transaction",
		`{"operations":[{"op":"insert","values":{"v":1}},{"table":7}]}`: "table",
	} {
		_, err := Decode([]byte(in))
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", in, err)
		case want != "" && err == nil:
			t.Errorf("%s decoded without an error", in)
		case want != "" && !strings.Contains(err.Error(), want):
			t.Errorf("%s: error %q, want it to name %q", in, err, want)
		}
	}
}

// BenchmarkDecode measures Decode beside encoding/json decoding the same
// transaction (three inserts of the bench's rows), its floor until now.
func BenchmarkDecode(b *testing.B) {
	tx := Transaction{ID: NewID(), CreatedAt: time.Now(), Principal: "anonymous"}
	for i := range 3 {
		tx.Operations = append(tx.Operations, Operation{Op: Insert, Table: "observations", ID: NewID(), Generated: true,
			Values: map[string]any{"id": NewID(), "target": "bench-123", "exposure_s": json.Number("42"),
				"meta": map[string]any{"n": json.Number("7")}, "status": "planned", "telescope": "main", "i": json.Number(string(rune('0' + i)))}})
	}
	p, err := json.Marshal(tx)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		decode func([]byte) (*Transaction, error)
	}{{"decoder=spool", Decode}, {"decoder=encoding-json", decodeStd}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.decode(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzDecode: whatever encoding/json reads as a transaction, Decode reads
// the same from what encoding/json writes of it; and what Decode reads
// encodes the same once read again from its encoding. Nothing panics.
func FuzzDecode(f *testing.F) {
	f.Add(`{"id":"a","operations":[{"op":"insert","table":"t","id":"1","values":{"v":9007199254740993,"m":{"a":[1,"x",null,true]}},"generated":true}],"created_at":"2026-12-06T21:00:00.5+01:00"}`)
	f.Add(`{"idempotency":{"key":"k","record":{"status":201}},"retry_of":"b","principal":"token:ci","operations":[{"op":"delete","table":"t","id":"\u00e9"}]}`)
	f.Add(`{"operations":[{"values":{"":-1.5e300,"s":"\"\\\u2028"}}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		if want, err := decodeStd([]byte(s)); err == nil {
			p, err := json.Marshal(want)
			if err != nil {
				t.Skip("encoding/json cannot write it back:", err)
			}
			if want, err = decodeStd(p); err != nil {
				t.Fatalf("encoding/json cannot read %s back: %v", p, err)
			}
			got, err := Decode(p)
			if err != nil {
				t.Fatalf("Decode(%s): %v", p, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Decode(%s):\n got %#v\nwant %#v", p, got, want)
			}
		}
		if tx, err := Decode([]byte(s)); err == nil {
			p, err := json.Marshal(tx)
			if err != nil {
				t.Fatalf("encode %#v: %v", tx, err)
			}
			again, err := Decode(p)
			if err != nil {
				t.Fatalf("Decode(%s), its own encoding: %v", p, err)
			}
			if p2, _ := json.Marshal(again); !bytes.Equal(p2, p) {
				t.Fatalf("Decode(%s) encodes as %s", p, p2)
			}
		}
	})
}
