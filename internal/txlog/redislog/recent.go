package redislog

import (
	"sync"
	"sync/atomic"

	"github.com/spoolgw/spool/internal/txn"
)

// recentSize is how many transactions this process appended are kept for
// its own Claim: more than a drain that keeps up has appended and not yet
// claimed, a few MiB of payloads.
const recentSize = 8192

// recent keeps the transactions this process appended, by stream id, with
// their payloads, so that its own Claim hands them over instead of
// decoding the payload Redis returns again. It only keeps them once this
// process has claimed (an api process that never applies keeps none),
// and forgets the oldest past recentSize (entries another process
// claimed). A kept transaction is handed over only if the payload claimed
// is byte for byte the one appended, so a stream id Redis gave again
// (a failover to a replica that had not the entry) never hands over
// another transaction.
type recent struct {
	on atomic.Bool // set by the first Claim

	mu   sync.Mutex
	byID map[string]recentTx
	ring []string // ids in the order kept (recentSize, made with byID); next is overwritten next
	next int
}

type recentTx struct {
	payload []byte
	tx      *txn.Transaction
}

// add keeps tx, appended as payload under stream id id.
func (r *recent) add(id string, payload []byte, tx *txn.Transaction) {
	if !r.on.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID, r.ring = make(map[string]recentTx, recentSize), make([]string, recentSize)
	}
	delete(r.byID, r.ring[r.next])
	r.ring[r.next] = id
	r.next = (r.next + 1) % recentSize
	r.byID[id] = recentTx{payload: payload, tx: tx}
}

// take returns, and forgets, the transaction kept under id if its
// payload is payload.
func (r *recent) take(id, payload string) (*txn.Transaction, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.byID[id]
	if !ok {
		return nil, false
	}
	delete(r.byID, id)
	return k.tx, string(k.payload) == payload
}
