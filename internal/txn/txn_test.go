package txn

import (
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
