package schema

import (
	"context"
	"errors"
	"sync/atomic"
)

// Live is the catalog in use: read once at start, read again on Refresh,
// and loaded by every reader without a lock. Its Normalize serves the
// overlays, which read changes back through JSON.
type Live struct {
	read func(ctx context.Context) (*Catalog, error)
	cat  atomic.Pointer[Catalog]
}

// NewLive reads the catalog with read and returns it live.
func NewLive(ctx context.Context, read func(ctx context.Context) (*Catalog, error)) (*Live, error) {
	if read == nil {
		return nil, errors.New("schema: no catalog reader")
	}
	l := &Live{read: read}
	if err := l.Refresh(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// Refresh reads the catalog again; on an error the one in use stays.
func (l *Live) Refresh(ctx context.Context) error {
	cat, err := l.read(ctx)
	if err != nil {
		return err
	}
	l.cat.Store(cat)
	return nil
}

// Load returns the catalog in use.
func (l *Live) Load() *Catalog { return l.cat.Load() }

// Normalize restores canonical values of a row of table (JSON turns
// integers into numbers and bytes into base64 text): each value its
// column's Normalize accepts is replaced by the canonical one; the rest
// stay as they are. A table the catalog lacks is left alone.
func (l *Live) Normalize(table string, values map[string]any) {
	t, err := l.Load().Table(table)
	if err != nil {
		return
	}
	for name, v := range values {
		if c := t.Column(name); c != nil {
			if n, err := c.Normalize(v); err == nil {
				values[name] = n
			}
		}
	}
}
