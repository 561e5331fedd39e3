package events

import (
	"cmp"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Cursor is a message's position: the entry it came from (A-B: a Redis
// stream id, or the hub's epoch and sequence on a local log) and its
// index among the entry's messages. Cursors of one hub compare in the
// order of the messages.
type Cursor struct {
	A, B uint64
	I    uint32
}

// endOfEntry is the index of a position after every message of an entry.
const endOfEntry = math.MaxUint32

// String writes c as A-B-I: opaque to clients.
func (c Cursor) String() string {
	return strconv.FormatUint(c.A, 10) + "-" + strconv.FormatUint(c.B, 10) + "-" + strconv.FormatUint(uint64(c.I), 10)
}

// Entry is the stream id of c's entry.
func (c Cursor) Entry() string {
	return strconv.FormatUint(c.A, 10) + "-" + strconv.FormatUint(c.B, 10)
}

// Compare orders cursors as cmp.Compare does.
func (c Cursor) Compare(d Cursor) int {
	if r := cmp.Compare(c.A, d.A); r != 0 {
		return r
	}
	if r := cmp.Compare(c.B, d.B); r != 0 {
		return r
	}
	return cmp.Compare(c.I, d.I)
}

// ParseCursor reads what String wrote.
func ParseCursor(s string) (Cursor, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 3 {
		return Cursor{}, fmt.Errorf("cursor %q: not one a message carried", s)
	}
	a, errA := strconv.ParseUint(parts[0], 10, 64)
	b, errB := strconv.ParseUint(parts[1], 10, 64)
	i, errI := strconv.ParseUint(parts[2], 10, 32)
	if errA != nil || errB != nil || errI != nil {
		return Cursor{}, fmt.Errorf("cursor %q: not one a message carried", s)
	}
	return Cursor{A: a, B: b, I: uint32(i)}, nil
}

// entryCursor is the position of stream entry id, before its messages.
func entryCursor(id string) (Cursor, error) {
	a, b, ok := strings.Cut(id, "-")
	if !ok {
		return Cursor{}, fmt.Errorf("stream id %q", id)
	}
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA != nil || errB != nil {
		return Cursor{}, fmt.Errorf("stream id %q", id)
	}
	return Cursor{A: x, B: y}, nil
}
