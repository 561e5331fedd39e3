// Package syncbuf is a bytes.Buffer that one goroutine may read while
// others write to it: the output of a process, or of a logger, that a test
// watches.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes; its zero value is empty and ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what has been written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
