package redislog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spoolgw/spool/internal/testservers"
	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

func TestSentinelURL(t *testing.T) {
	t.Parallel()
	u, err := sentinelOptions("redis-sentinel://app:secret@127.0.0.1:26379,10.0.0.2:26380/spool-master?db=3&sentinel_password=s3&dial_timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(u.Addrs, ",") != "127.0.0.1:26379,10.0.0.2:26380" || u.MasterName != "spool-master" || u.DB != 3 ||
		u.Username != "app" || u.Password != "secret" || u.SentinelPassword != "s3" || u.DialTimeout != 2*time.Second || u.TLSConfig != nil {
		t.Fatalf("options: addrs %v master %q db %d user %q password %q sentinel password %q dial timeout %v TLS %v",
			u.Addrs, u.MasterName, u.DB, u.Username, u.Password, u.SentinelPassword, u.DialTimeout, u.TLSConfig)
	}
	u, err = sentinelOptions("rediss-sentinel://h1:1,h2:2/m")
	if err != nil {
		t.Fatal(err)
	}
	if u.TLSConfig == nil || u.TLSConfig.ServerName != "" {
		t.Fatalf("rediss-sentinel: TLS %+v; want TLS checking each dialled name", u.TLSConfig)
	}
	if !IsSentinelURL("redis-sentinel://h:1/m") || !IsSentinelURL("rediss-sentinel://h:1/m") || IsSentinelURL("redis://h:1/0") {
		t.Error("IsSentinelURL tells the schemes apart wrongly")
	}
	for _, bad := range []struct{ url, want string }{
		{"redis-sentinel://h1:1,h2:2/", "master's name"},
		{"redis-sentinel://h1:1/a/b", "master's name"},
		{"redis-sentinel://h1,h2:2/m", "Sentinel address"},
		{"redis-sentinel://h1:1/m?bogus=1", "bogus"},
		{"redis-cluster://h1:1,h2:2", "does not run on a Redis Cluster"},
	} {
		_, err := newClient(bad.url)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("newClient(%q): %v; want an error saying %q", bad.url, err, bad.want)
		}
	}
	if _, err := newClient("redis-sentinel://u:hunter2@h1:1/"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("an error about a URL repeats its password, or none: %v", err)
	}
}

// startReplicated starts a master and one replica of its own for t, and
// returns them.
func startReplicated(t *testing.T) (master, replica *testservers.Redis) {
	t.Helper()
	testservers.Need(t, srvErr)
	dir, err := testservers.TempDir("spool-redislog-replicas-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	master, err = testservers.StartRedis(filepath.Join(dir, "master"))
	testservers.Need(t, err)
	t.Cleanup(func() { _ = master.Stop() })
	replica, err = testservers.StartReplica(filepath.Join(dir, "replica"), master)
	testservers.Need(t, err)
	t.Cleanup(func() { _ = syscall.Kill(replica.Pid(), syscall.SIGCONT); _ = replica.Stop() })
	return master, replica
}

// A write is acknowledged once the replica has it; while the replica is
// stopped, appends, lease tokens, repeats of taken keys and deliveries to
// the applier are refused (ErrNotReplicated), though the refused append
// is on the master; once the replica is back, that append is delivered,
// and its key answers its repeat: nothing is applied that the replica
// might not have, and nothing refused is appended twice.
//
// The replicas' timeout is a second: long enough that a replica in sync
// answers within it on a loaded machine (its own appendfsync always can
// stall for hundreds of milliseconds), short enough for the refusals.
func TestMinReplicas(t *testing.T) {
	const replicaTimeout = time.Second
	t.Parallel()
	master, replica := startReplicated(t)
	l := openLog(t, Config{URL: master.URL, MinReplicas: 1, ReplicaTimeout: replicaTimeout})
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	ctx := testCtx(t)
	if err := master.WaitReplicas(ctx, 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	first, err := l.Append(ctx, newTxn(op(txn.Insert, "samples", txn.NewID(), map[string]any{"i": 0})))
	if err != nil {
		t.Fatalf("append with the replica in sync: %v", err)
	}
	// Acknowledged means the replica has it: read it there at once.
	if n, err := rc.XLen(ctx, StreamKey(l.Name())).Result(); err != nil || n != 1 {
		t.Fatalf("the replica's stream right after the acknowledgement: %d entries, %v; want 1", n, err)
	}

	if err := syscall.Kill(replica.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	keyed := newTxn(op(txn.Insert, "samples", txn.NewID(), map[string]any{"i": 1}))
	keyed.Idempotency = &txn.Idempotency{Key: "k1", Record: []byte(`{"tx":"` + keyed.ID + `"}`)}
	start := time.Now()
	_, err = l.Append(ctx, keyed)
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("append with the replica stopped: %v; want ErrNotReplicated", err)
	}
	if took := time.Since(start); took > 5*replicaTimeout {
		t.Errorf("the refusal took %v; want about the ReplicaTimeout (%v)", took, replicaTimeout)
	}
	if got := pending(t, l); len(got) != 2 {
		t.Fatalf("%d entries on the master after a refused append; want 2 (the refused one is there)", len(got))
	}
	if _, _, err := l.LookupKey(ctx, "k1"); !errors.Is(err, ErrNotReplicated) {
		t.Errorf("lookup of the refused append's key with the replica stopped: %v; want ErrNotReplicated", err)
	}
	if _, err := l.Claim(ctx, 10); !errors.Is(err, ErrNotReplicated) {
		t.Errorf("claim with the replica stopped: %v; want ErrNotReplicated (nothing delivered)", err)
	}
	other := openLog(t, Config{URL: master.URL, Name: l.Name(), Consumer: "standby", MinReplicas: 1, ReplicaTimeout: replicaTimeout})
	le := other.Lease(LeaseConfig{})
	if _, _, err := le.Acquire(ctx); !errors.Is(err, ErrNotReplicated) {
		t.Errorf("lease acquired with the replica stopped: %v; want ErrNotReplicated", err)
	}

	if err := syscall.Kill(replica.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	got := claimN(t, l, 2)
	if got[0].Pos != first.Pos || got[1].Tx.ID != keyed.ID {
		t.Fatalf("claimed %s, %s (tx %s) once the replica was back; want %s, then the refused append (tx %s)",
			got[0].Pos, got[1].Pos, got[1].Tx.ID, first.Pos, keyed.ID)
	}
	rec, found, err := l.LookupKey(ctx, "k1")
	if err != nil || !found || !strings.Contains(string(rec), keyed.ID) {
		t.Errorf("lookup of the key once the replica was back: %q %v %v; want the refused append's record", rec, found, err)
	}
	again := newTxn(op(txn.Insert, "samples", txn.NewID(), map[string]any{"i": 1}))
	again.Idempotency = &txn.Idempotency{Key: "k1", Record: []byte(`{}`)}
	var taken *txlog.KeyTakenError
	if _, err := l.Append(ctx, again); !errors.As(err, &taken) {
		t.Errorf("a retry of the refused append under its key: %v; want the key taken (no second append)", err)
	}
	if n := len(pending(t, l)); n != 2 {
		t.Errorf("%d entries after the retry; want 2", n)
	}
	token, lost, err := le.Acquire(ctx)
	if err != nil {
		t.Fatalf("lease once the replica was back: %v", err)
	}
	// The token the replica has is the one drawn: a failover now would
	// not hand it out again.
	if v, err := rc.Get(ctx, newKeys(l.Name()).fence).Int64(); err != nil || v != token {
		t.Errorf("the replica's fencing counter %d (%v) after Acquire drew token %d; want equal", v, err, token)
	}
	_ = le.Release(context.Background())
	<-lost
}
