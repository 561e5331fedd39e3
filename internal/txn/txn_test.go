package txn

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestFirstIDAt(t *testing.T) {
	t.Parallel()
	before := NewID()
	time.Sleep(2 * time.Millisecond)
	at := time.Now()
	first := FirstIDAt(at)
	time.Sleep(2 * time.Millisecond)
	after := NewID()
	if !(before < first && first < after) {
		t.Fatalf("FirstIDAt(%v) = %s; want it between %s (made before) and %s (made after)", at, first, before, after)
	}
	if !ValidID(first) || uuid.MustParse(first).Version() != 7 {
		t.Fatalf("FirstIDAt(%v) = %s, not a UUIDv7", at, first)
	}
	if got, want := IDTime(first), at.Truncate(time.Millisecond).UTC(); !got.Equal(want) {
		t.Fatalf("IDTime(FirstIDAt(%v)) = %v, want %v", at, got, want)
	}
}

// Decode keeps integers beyond 2^53 exact and fails on what is not a
// transaction's JSON.
func TestDecode(t *testing.T) {
	tx, err := Decode(strings.NewReader(`{"id":"a","operations":[{"op":"insert","table":"t","id":"1","values":{"v":9007199254740993}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if v := tx.Operations[0].Values["v"]; v != json.Number("9007199254740993") {
		t.Fatalf("v decoded as %v (%T), want json.Number 9007199254740993", v, v)
	}
	if _, err := Decode(strings.NewReader(`{"id":`)); err == nil {
		t.Fatal("truncated JSON decoded without an error")
	}
}
