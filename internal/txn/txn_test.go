package txn

import (
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
