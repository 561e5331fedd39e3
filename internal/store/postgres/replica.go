package postgres

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spoolgw/spool/internal/txn"
)

// Replica is a streaming read replica: smart reads query it, and the
// replication watcher follows its replay position. It reads only.
type Replica struct {
	*Store
}

// OpenReplica connects to a read replica at url. It runs no migration (a
// standby is read-only; the primary's migrations reach it by replication).
func OpenReplica(ctx context.Context, url string, logger *slog.Logger) (*Replica, error) {
	s, err := open(ctx, url, logger, false)
	if err != nil {
		return nil, err
	}
	return &Replica{Store: s}, nil
}

// ReplayLSN is how far the replica has replayed the primary's WAL.
func (r *Replica) ReplayLSN(ctx context.Context) (txn.LSN, error) {
	return r.lsn(ctx, "select pg_last_wal_replay_lsn()::text")
}

// CurrentLSN is the primary's current WAL write position.
func (s *Store) CurrentLSN(ctx context.Context) (txn.LSN, error) {
	return s.lsn(ctx, "select pg_current_wal_lsn()::text")
}

func (s *Store) lsn(ctx context.Context, sql string) (txn.LSN, error) {
	var text *string
	if err := s.pool.QueryRow(ctx, sql).Scan(&text); err != nil {
		return 0, fmt.Errorf("read WAL position: %w", err)
	}
	if text == nil {
		return 0, fmt.Errorf("read WAL position: not a replica in recovery")
	}
	return txn.ParseLSN(*text)
}
