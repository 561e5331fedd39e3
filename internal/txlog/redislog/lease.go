package redislog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/txlog"
)

// ErrLeaseHeld is returned by Acquire on a Lease that this process holds
// already.
var ErrLeaseHeld = errors.New("lease already held by this Lease")

// Lease makes one applier of a log the active one. The holder's consumer
// name (and a random suffix) is the value of the log's lease key, which
// expires after TTL unless renewed; every Acquire draws a fencing token, a
// number larger than every earlier one of the log, which the database
// checks at commit (store.Gate.Fence): an applier that was paused while a
// new one took over cannot commit after it, so the lease itself need not be
// perfect. A Lease is safe for concurrent use; one process should use one
// Lease per log.
type Lease struct {
	l   *Log
	cfg LeaseConfig

	mu    sync.Mutex
	value string        // our value in the lease key while we hold it
	stop  chan struct{} // closed by Release to stop the renewer
	done  chan struct{} // closed when the renewer has returned
}

// Lease returns the applier lease of this log. Its configuration is
// checked by Acquire.
//
// From this call on, the log's Claims deliver only while this process
// holds the lease.
func (l *Log) Lease(cfg LeaseConfig) *Lease {
	l.leased.Store(true)
	return &Lease{l: l, cfg: cfg}
}

// Acquire blocks until this process holds the lease, trying every Renew
// (and honouring ctx and Close), then returns its fencing token and a
// channel that is closed when the lease is lost: when a renewal finds the
// lease gone or someone else's, when renewals failed for so long that the
// lease may have run out, when ctx ends, or on Release or Close. The lease
// is renewed in the background every Renew until then. After lost is
// closed the caller must stop committing under the token; it may Acquire
// again.
//
// The next Claim on the lease's Log after an Acquire starts over, as the
// first Claim of a Log does: it takes over the entries other consumers
// left, then delivers those pending under this consumer, then new ones; so
// an applier that becomes active again after a standby spell gets what an
// applier active meanwhile left behind, in order. Log.Takeover does that
// part at once.
//
// A Redis error while trying is returned: the caller decides how to retry.
func (le *Lease) Acquire(ctx context.Context) (token int64, lost <-chan struct{}, err error) {
	if err := le.cfg.Validate(); err != nil {
		return 0, nil, err
	}
	cfg := le.cfg.withDefaults()
	le.mu.Lock()
	defer le.mu.Unlock()
	if le.value != "" {
		select {
		case <-le.done: // lost: the renewer returned; we may acquire again
		default:
			return 0, nil, fmt.Errorf("redislog: lease: %w", ErrLeaseHeld)
		}
	}
	value := le.l.cfg.Consumer + "/" + nonce()
	ttl := cfg.TTL.Milliseconds()
	for {
		if le.l.isClosing() {
			return 0, nil, fmt.Errorf("redislog: lease: %w", txlog.ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			return 0, nil, fmt.Errorf("redislog: lease: %w", err)
		}
		sent := time.Now()
		token, err := leaseAcquireScript.Run(ctx, le.l.client, []string{le.l.keys.lease, le.l.keys.fence}, value, ttl).Int64()
		if err != nil {
			return 0, nil, le.l.fail("lease: acquire", err)
		}
		if token > 0 {
			if err := le.l.waitReplicas(ctx); err != nil {
				// A token the replicas may not have could be drawn again
				// after a failover, and refused by the database: give the
				// lease back, and let the caller try again.
				if rerr := leaseReleaseScript.Run(context.WithoutCancel(ctx), le.l.client, []string{le.l.keys.lease}, value).Err(); rerr != nil {
					le.l.logger.Warn("redislog: lease: release after a failed WAIT; it expires within its TTL", "err", rerr)
				}
				return 0, nil, le.l.fail("lease: acquire", err)
			}
			lostCh := make(chan struct{})
			stop, done := make(chan struct{}), make(chan struct{})
			if !le.l.goBackground(func() { le.renew(ctx, cfg, value, sent, stop, done, lostCh) }) {
				return 0, nil, fmt.Errorf("redislog: lease: %w", txlog.ErrClosed)
			}
			le.value, le.stop, le.done = value, stop, done
			le.l.holder.Store(&value)
			le.l.restartClaim.Store(true)
			le.l.logger.Info("redislog: lease acquired", "consumer", le.l.cfg.Consumer, "token", token, "ttl", cfg.TTL)
			return token, lostCh, nil
		}
		t := time.NewTimer(cfg.Renew)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		case <-le.l.closing:
			t.Stop()
		}
	}
}

// nonce is 8 random bytes in hex: what tells two holders with the same
// consumer name apart.
func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// renew extends the lease every Renew while it is ours, and closes lost when
// it is not, or may not be, any more. last is when the last successful
// command that set the lease's expiry was sent: the lease lasts at least
// until last + TTL.
func (le *Lease) renew(ctx context.Context, cfg LeaseConfig, value string, last time.Time, stop, done, lost chan struct{}) {
	defer close(done)
	defer close(lost)
	defer le.l.dropHolder(value)
	ttl := cfg.TTL.Milliseconds()
	t := time.NewTicker(cfg.Renew)
	defer t.Stop()
	log := le.l.logger.With("consumer", le.l.cfg.Consumer)
	for {
		select {
		case <-t.C:
		case <-stop:
			return
		case <-ctx.Done():
			log.Info("redislog: lease given up: its context ended; it expires within its TTL", "ttl", cfg.TTL)
			return
		case <-le.l.closing:
			log.Info("redislog: lease given up: the log closed; it expires within its TTL", "ttl", cfg.TTL)
			return
		}
		sent := time.Now()
		cctx, cancel := context.WithTimeout(context.Background(), cfg.Renew)
		ok, err := leaseRenewScript.Run(cctx, le.l.client, []string{le.l.keys.lease}, value, ttl).Bool()
		cancel()
		switch {
		case err == nil && ok:
			last = sent
		case err == nil:
			log.Warn("redislog: lease lost: it expired or another applier holds it")
			return
		case time.Now().Add(cfg.Renew).After(last.Add(cfg.TTL)):
			// The next try would come after the lease may have run out.
			log.Error("redislog: lease lost: renewals failed until it may have expired", "err", err)
			return
		default:
			log.Warn("redislog: lease renewal failed; trying again", "err", err)
		}
	}
}

// Release stops renewing the lease and deletes it if it is still ours, so
// that a standby takes over at its next try instead of after the TTL. It
// closes the lost channel of the Acquire. Releasing a lease not held is a
// no-op.
func (le *Lease) Release(ctx context.Context) error {
	le.mu.Lock()
	defer le.mu.Unlock()
	if le.value == "" {
		return nil
	}
	value := le.value
	close(le.stop)
	<-le.done
	le.value = ""
	if le.l.isClosing() {
		return fmt.Errorf("redislog: lease: release: %w", txlog.ErrClosed)
	}
	if err := leaseReleaseScript.Run(ctx, le.l.client, []string{le.l.keys.lease}, value).Err(); err != nil {
		return le.l.fail("lease: release", err)
	}
	le.l.logger.Info("redislog: lease released", "consumer", le.l.cfg.Consumer)
	return nil
}

// Holder returns the consumer name of the process holding the lease, ""
// if nobody does.
func (le *Lease) Holder(ctx context.Context) (string, error) {
	if le.l.isClosing() {
		return "", fmt.Errorf("redislog: lease: holder: %w", txlog.ErrClosed)
	}
	v, err := le.l.client.Get(ctx, le.l.keys.lease).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", le.l.fail("lease: holder", err)
	}
	if i := strings.LastIndexByte(v, '/'); i >= 0 {
		v = v[:i]
	}
	return v, nil
}

// dropHolder records that this process no longer holds the lease under
// value, so that Claims stop at once (a later Acquire's value stays).
func (l *Log) dropHolder(value string) {
	if p := l.holder.Load(); p != nil && *p == value {
		l.holder.CompareAndSwap(p, nil)
	}
}
