package testservers

import (
	"net"
	"os"
	"testing"
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
