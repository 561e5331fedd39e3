package testservers

import (
	"net"
	"os"
	"testing"
	"time"
)

func TestStartStop(t *testing.T) {
	dir, err := TempDir("spool-testservers-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	r, err := StartRedis(dir + "/redis")
	Need(t, err)
	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	pg, err := StartPostgres(dir)
	Need(t, err)
	defer pg.Stop()
	if pg.PrimaryPid() == 0 || pg.ReplicaPid() == 0 {
		t.Fatalf("pids: primary %d replica %d", pg.PrimaryPid(), pg.ReplicaPid())
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if alive(pg.PrimaryPid()) {
		t.Fatal("primary still running after Stop")
	}
}

// A Sentinel set fails over when its master is killed, and takes the old
// master back once it is started again: the master has its replica in
// sync.
func TestSentinelSetFailover(t *testing.T) {
	dir, err := TempDir("spool-testservers-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := t.Context()
	s, err := StartSentinelSet(ctx, dir, "spool", 1, 3)
	Need(t, err)
	defer s.Stop()
	old, err := s.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if old != s.Servers[0] {
		t.Fatalf("master at start %s, want %s", old.Addr, s.Servers[0].Addr)
	}
	old.Kill()
	killed := time.Now()
	m, err := s.WaitFailover(ctx, old, 0, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover to %s %v after the master's SIGKILL", m.Addr, time.Since(killed).Round(time.Millisecond))
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	// The master the Sentinels name by then, whichever it is: on a loaded
	// machine they may fail over again (the promoted master stalled past
	// down-after), and the first one promoted is then the replica.
	now, err := s.WaitMaster(ctx, 1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if now != m {
		t.Logf("the Sentinels failed over again, to %s", now.Addr)
	}
}
