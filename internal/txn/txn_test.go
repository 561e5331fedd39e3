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
	// An id sorts at or after the first id of its own millisecond and
	// before that of the next, whatever the clock says now.
	id := NewID()
	at := IDTime(id)
	first := FirstIDAt(at)
	if next := FirstIDAt(at.Add(time.Millisecond)); !(first <= id && id < next && first < next) {
		t.Fatalf("FirstIDAt(%v) = %s, FirstIDAt of the next millisecond %s; want %s (made at %v) between them", at, first, next, id, at)
	}
	if got := IDTime(first); !got.Equal(at) {
		t.Fatalf("IDTime(FirstIDAt(%v)) = %v", at, got)
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
