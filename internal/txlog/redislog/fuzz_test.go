package redislog

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/spoolgw/spool/internal/txn"
)

// FuzzComparePos: positions compare as a total order, whatever the text.
func FuzzComparePos(f *testing.F) {
	for _, s := range [][2]string{{"1-0", "1-1"}, {"9-0", "10-0"}, {"x", "1-0"}, {"18446744073709551615-1", "0-0"}, {"-", "1-"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := ComparePos(a, b), ComparePos(b, a)
		if ab != -ba {
			t.Fatalf("ComparePos(%q, %q) = %d but ComparePos(%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if ComparePos(a, a) != 0 {
			t.Fatalf("ComparePos(%q, itself) != 0", a)
		}
	})
}

// FuzzDecode: the decoders of stream and overlay entries never panic, and
// what they accept encodes and decodes to the same thing again.
func FuzzDecode(f *testing.F) {
	f.Add(`{"tx":"0190-x","kind":"insert","values":{"a":1,"b":[true,null,"s"],"c":12345678901234567890}}`)
	f.Add(`{"id":"x","operations":[{"op":"update","table":"t:1","id":"k:2","values":{"v":1.5e300}}],"created_at":"2026-11-22T10:11:12Z"}`)
	f.Add(`{`)
	f.Fuzz(func(t *testing.T, s string) {
		if e, err := decodeOp(s); err == nil {
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatalf("encode %+v: %v", e, err)
			}
			again, err := decodeOp(string(b))
			if err != nil {
				t.Fatalf("decode %s again: %v", b, err)
			}
			if b2, _ := json.Marshal(again); string(b2) != string(b) {
				t.Fatalf("round trip changed %s to %s", b, b2)
			}
		}
		if tx, err := txn.Decode([]byte(s)); err == nil {
			b, err := json.Marshal(tx)
			if err != nil {
				t.Fatalf("encode %+v: %v", tx, err)
			}
			if _, err := txn.Decode(b); err != nil {
				t.Fatalf("decode %s again: %v", b, err)
			}
		}
	})
}

// FuzzDecodeOps: the events stream's compact operations decode what
// encodeOps wrote, whatever tables, keys and an insert's values hold, and
// never panic on anything else.
func FuzzDecodeOps(f *testing.F) {
	f.Add("u12:observations3:abc", "insert", "t:1", "k\n:2", "v:1")
	f.Add("x", "delete", "", "", "")
	f.Add(`I3:obs1:77:{"id":7}`, "update", "a", "b", "")
	f.Fuzz(func(t *testing.T, raw, kind, table, key, value string) {
		_, _ = decodeOps(raw, nil, nil)
		k := txn.Kind(kind)
		if !k.Valid() {
			return
		}
		// Values come from JSON requests: valid UTF-8.
		value, vkey := strings.ToValidUTF8(value, "?"), strings.ToValidUTF8(key, "?")
		ops := []txn.Operation{
			{Op: k, Table: table, ID: key},
			{Op: txn.Delete, Table: key, ID: table},
			{Op: txn.Insert, Table: table, ID: key, Values: map[string]any{"v": value, vkey: json.Number("12")}},
		}
		vals := make([][]byte, len(ops))
		for i, op := range ops {
			if op.Values != nil {
				vals[i], _ = json.Marshal(op.Values)
			}
		}
		got, err := decodeOps(encodeOps(ops, vals), nil, nil)
		same := func(a, b txn.Operation) bool {
			return a.Op == b.Op && a.Table == b.Table && a.ID == b.ID && reflect.DeepEqual(a.Values, b.Values)
		}
		if err != nil || len(got) != len(ops) {
			t.Fatalf("%v: decoded %v, %v", ops, got, err)
		}
		for i := range ops {
			if !same(got[i], ops[i]) {
				t.Fatalf("operation %d: %#v, decoded %#v", i, ops[i], got[i])
			}
		}
	})
}
