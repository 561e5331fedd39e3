package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// Keys is where the records of idempotency keys are looked up: the Redis
// log's (shared by every process), or idempotency.Local.
type Keys interface {
	LookupKey(ctx context.Context, key string) (record []byte, found bool, err error)
}

// MaxKeyLength bounds an Idempotency-Key.
const MaxKeyLength = 255

// keyRecord is what a repeat of a keyed write is answered from.
type keyRecord struct {
	TxID        string            `json:"tx"`
	Fingerprint string            `json:"fp"`
	IDs         []string          `json:"ids"`
	Refs        map[string]string `json:"refs,omitempty"`
}

// scopedKey is the key of principal's idempotency key as the logs keep it.
func scopedKey(principal, key string) string {
	sum := sha256.Sum256([]byte(principal + "\n" + key))
	return hex.EncodeToString(sum[:])
}

// keyLocks serialises the writes of one key within this process: a repeat
// that arrives while the first is being made durable waits for it.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// submitKeyed is Submit of a request with an Idempotency-Key: a repeat of
// a write the key took answers what that write answered and appends
// nothing; the key with another request is refused (ErrConflict of kind
// ErrKeyReused).
func (g *Gateway) submitKeyed(ctx context.Context, req *Request, lookup func(string) (*schema.Table, error)) (*Receipt, error) {
	if len(req.Key) > MaxKeyLength {
		return nil, txn.Refuse(txn.ErrInvalid, "Idempotency-Key: at most %d bytes, not %d", MaxKeyLength, len(req.Key))
	}
	if g.keys == nil {
		return nil, txn.Refuse(txn.ErrUnsupported, "Idempotency-Key: this spool keeps no keys")
	}
	key := scopedKey(req.Principal, req.Key)
	unlock := g.keyLocks.lock(key)
	defer unlock()
	rec, found, err := g.keys.LookupKey(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("%w: idempotency key: %w", ErrUnavailable, err)
	}
	if found {
		return repeat(rec, req)
	}
	tx, rc, err := g.resolve(req, lookup)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(keyRecord{TxID: tx.ID, Fingerprint: req.Fingerprint, IDs: rc.IDs, Refs: rc.Refs})
	if err != nil {
		return nil, fmt.Errorf("idempotency record: %w", err)
	}
	tx.Idempotency = &txn.Idempotency{Key: key, Record: body}
	err = g.Enqueue(ctx, tx)
	var taken *txlog.KeyTakenError
	if errors.As(err, &taken) {
		// Another process took the key first, in the same step as its
		// write's append.
		return repeat(taken.Record, req)
	}
	if err != nil {
		return nil, err
	}
	return rc, nil
}

// repeat answers a repeat of the keyed write rec records.
func repeat(rec []byte, req *Request) (*Receipt, error) {
	var r keyRecord
	if err := json.Unmarshal(rec, &r); err != nil {
		return nil, fmt.Errorf("idempotency record: %w", err)
	}
	if r.Fingerprint != req.Fingerprint {
		return nil, &txn.InputError{Kind: ErrKeyReused, Op: -1,
			Msg: fmt.Sprintf("Idempotency-Key %q was used for another request (transaction %s); use a new key for a new request", req.Key, r.TxID)}
	}
	rc := &Receipt{TransactionID: r.TxID, State: txn.Queued, IDs: r.IDs, Refs: r.Refs}
	if rc.Refs == nil {
		rc.Refs = map[string]string{}
	}
	return rc, nil
}

// ErrKeyReused is the kind of a refused request whose Idempotency-Key an
// earlier, different request took (HTTP 422).
var ErrKeyReused = errors.New("idempotency key reused")
