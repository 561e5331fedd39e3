package events_test

import (
	"testing"

	"github.com/spoolgw/spool/internal/events"
)

func TestCursorRoundTripAndOrder(t *testing.T) {
	cs := []events.Cursor{{A: 1, B: 0, I: 0}, {A: 1, B: 0, I: 7}, {A: 1, B: 2, I: 0}, {A: 2, B: 0, I: 0}, {A: 2, B: 0, I: 1<<32 - 1}}
	for i, c := range cs {
		got, err := events.ParseCursor(c.String())
		if err != nil || got != c {
			t.Fatalf("%v: parsed %v, %v", c, got, err)
		}
		if i > 0 && cs[i-1].Compare(c) >= 0 {
			t.Fatalf("%v not before %v", cs[i-1], c)
		}
	}
	for _, bad := range []string{"", "1-2", "1-2-3-4", "a-1-1", "1-1-4294967296", "-1-1-1"} {
		if _, err := events.ParseCursor(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add("1712345678901-0-2")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := events.ParseCursor(s)
		if err != nil {
			return
		}
		if again, err := events.ParseCursor(c.String()); err != nil || again != c {
			t.Fatalf("%q: %v does not round-trip", s, c)
		}
	})
}
