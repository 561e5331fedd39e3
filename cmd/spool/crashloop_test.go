package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// TestCrashLoopRedisPostgres is TestCrashLoop on the shared shape: one
// spool (--role all) with its log in Redis, draining into PostgreSQL, under
// 8 writers that insert rows and update each three times, is killed with
// SIGKILL at a random moment, again and again, and restarted. After the
// last restart and the drain: every acknowledged transaction is in
// spool_applied once, every row holds its last acknowledged update, no row
// is there twice, nothing is dead-lettered.
//
// A killed process holds the log's lease until its TTL (2 s) runs out;
// the test deletes the dead holder's lease key after each kill instead, as
// the TTL would, so that the next process starts applying at once and kills
// land in the middle of applying, not only of intake. The next holder takes
// its claimed entries over at once, as in production.
func TestCrashLoopRedisPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop runs real processes")
	}
	db := newDatabase(t)
	logName := fmt.Sprintf("crash-%d", rand.Uint32())
	opt, err := redis.ParseURL(redisSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	appliedNow := func() int {
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from spool_applied").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	args := []string{"--data-dir", t.TempDir(), "--log", redisSrv.URL, "--log-name", logName, "--database", db, "--role", "all"}
	l := newRowLoad("crash", 3, 0)
	const rounds = 20
	killedApplying := 0
	for round := range rounds {
		p := startArgs(t, args...)
		rows0, txns0 := l.acked()
		applied0 := appliedNow()
		stop := make(chan struct{})
		l.start(p.url, 8, stop)
		time.Sleep(time.Duration(500+rand.IntN(3000)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		p.done <- nil
		close(stop)
		l.wait()
		if err := rdb.Del(ctx, "spool:{"+logName+"}:lease").Err(); err != nil {
			t.Fatal(err)
		}
		rows1, txns1 := l.acked()
		applied := appliedNow() - applied0
		if applied > 0 {
			killedApplying++
		}
		t.Logf("round %d: %d rows, %d transactions acknowledged before SIGKILL; %d transactions applied in the round (lease taken: %v)",
			round, rows1-rows0, txns1-txns0, applied, strings.Contains(p.stderr.String(), "lease acquired"))
	}
	p := startArgs(t, args...)
	waitDrained(t, p)
	p.stop(t)
	all := l.tally(time.Time{}, time.Time{})
	t.Logf("%d rounds, %d of them killed while applying; requests: %v", rounds, killedApplying, all)
	if killedApplying == 0 {
		t.Error("no round applied anything before its SIGKILL: the loop never killed an applier at work")
	}
	l.checkRows(t, db)
}
