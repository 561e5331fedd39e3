package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spoolgw/spool/internal/testservers"
)

// TestSentinelFailover runs two api processes and two appliers on a log in
// a Sentinel set (a master with appendfsync always, one replica, three
// Sentinels; --log-min-replicas 1 by default) and kills the master with
// SIGKILL under a steady load of inserts and updates through both api
// processes; in the second case the active applier (the lease holder) is
// killed with it, as on a machine that dies with both. Writes are refused
// with 503 until the Sentinels have promoted the replica and the old
// master, started again, is its replica (a write waits for one replica);
// then they are acknowledged again, with no spool process restarted.
// After the drain every acknowledged write is in PostgreSQL exactly once,
// every row at its last acknowledged update, nothing dead-lettered.
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("fails a Sentinel set over under load")
	}
	for _, tc := range []struct {
		name       string
		killHolder bool
	}{
		{"master", false},
		{"master and lease holder", true},
	} {
		t.Run(tc.name, func(t *testing.T) { sentinelFailover(t, tc.killHolder) })
	}
}

func sentinelFailover(t *testing.T, killHolder bool) {
	testservers.Need(t, serversErr)
	dir, err := testservers.TempDir("spool-sentinel-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	set, err := testservers.StartSentinelSet(t.Context(), dir, "spool", 1, 3)
	testservers.Need(t, err)
	t.Cleanup(set.Stop)
	db := newDatabase(t)
	logName := fmt.Sprintf("sentinel-%d", rand.Uint32())
	api1 := startArgs(t, logArgs(t, set.URL(), db, logName, "api")...)
	api2 := startArgs(t, logArgs(t, set.URL(), db, logName, "api")...)
	app1 := startArgs(t, logArgs(t, set.URL(), db, logName, "applier")...)
	app2 := startArgs(t, logArgs(t, set.URL(), db, logName, "applier")...)

	l := newRowLoad("sentinel", 3, 5*time.Millisecond)
	stop := make(chan struct{})
	l.start(api1.url, 4, stop)
	l.start(api2.url, 4, stop)
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	waitFor(t, 30*time.Second, "the load applied", func() bool {
		var n int64
		return conn.QueryRow(t.Context(), "select count(*) from spool_applied").Scan(&n) == nil && n > 100
	})
	holder, standby := app1, app2
	if !strings.Contains(app1.stderr.String(), "lease acquired") {
		holder, standby = app2, app1
	}
	waitLog(t, holder, "lease acquired")

	master := set.Servers[0]
	killed := time.Now()
	master.Kill()
	if killHolder {
		if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := set.WaitFailover(t.Context(), master, 0, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	failedOver := time.Since(killed)
	// With one replica, the promoted one has none: writes wait for the
	// old master to come back as its replica.
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	// Whichever server the Sentinels name by then: a loaded machine can
	// stall the promoted one past SentinelDownAfter and fail over again.
	if _, err := set.WaitMaster(t.Context(), 1, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	synced := time.Now()
	waitFor(t, 30*time.Second, "writes acknowledged again after the failover", func() bool {
		return l.tally(synced, time.Time{}).ok > 0
	})
	resumed := time.Now()
	t.Logf("failover %v after the master's SIGKILL; the old master a replica again %v after its restart; writes acknowledged again %v after that",
		failedOver.Round(time.Millisecond), synced.Sub(restarted).Round(time.Millisecond), resumed.Sub(synced).Round(time.Millisecond))
	// Some more load on the new master, then drain.
	waitFor(t, 30*time.Second, "more writes on the new master", func() bool { return l.tally(resumed, time.Time{}).ok > 100 })
	close(stop)
	l.wait()
	appliers := []*proc{app1, app2}
	if killHolder {
		appliers = []*proc{standby}
		waitLog(t, standby, "lease acquired")
	}
	waitDrained(t, api1, append([]*proc{api2}, appliers...)...)

	outage := l.tally(killed, synced)
	t.Logf("from the SIGKILL to the replica back in sync: %v", outage)
	if outage.byStatus[http.StatusServiceUnavailable] == 0 {
		t.Error("no write was refused with 503 during the failover")
	}
	all := l.tally(time.Time{}, time.Time{})
	t.Logf("whole run: %v", all)
	for status, n := range all.byStatus {
		if status != http.StatusServiceUnavailable {
			t.Errorf("%d writes answered %d (0: no answer); every refusal must be a 503 (errors %q)", n, status, all.errs)
		}
	}
	l.checkRows(t, db)
}
