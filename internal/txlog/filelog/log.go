package filelog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/handoff"
	"github.com/spoolgw/spool/internal/txn"
)

var _ txlog.Log = (*Log)(nil)

// ErrFailed is wrapped by every Append after a write or fdatasync of the
// log failed. The log never retries: after a failed fsync the state of the
// page cache is unknown, so the only safe way on is to reopen the log, which
// rereads what is really on disk.
var ErrFailed = errors.New("filelog: log failed, reopen it")

// ErrNoSpace is wrapped by an Append refused because the disk is full. It
// is not a failure of the log: the write was undone, the log stays open,
// and appends succeed again once there is space.
var ErrNoSpace = errors.New("filelog: no space left for the log")

// noSpaceReported is how long Err keeps reporting a full disk after the
// last append it refused, unless a write succeeds first: long enough for a
// readiness probe to see it, short enough that a server nobody writes to
// (a load balancer took it out) comes back by itself once space returns.
const noSpaceReported = 5 * time.Second

// ErrAckOrder is wrapped by Ack when an entry was not claimed, was already
// acknowledged, or is acknowledged out of claim order.
var ErrAckOrder = errors.New("ack out of claim order")

// lockName is the lock file held while a Log has the directory open.
const lockName = "LOCK"

// Log is the on-disk log. It is safe for concurrent use.
type Log struct {
	dir      string
	cfg      Config
	logger   *slog.Logger
	dirFile  *os.File // the directory, synced after files are created or renamed
	lockFile *os.File

	queue      *handoff.Queue[[]byte]
	closing    chan struct{} // closed when Close starts
	writerDone chan struct{} // closed when the writer goroutine has returned
	closeOnce  sync.Once
	closeErr   error
	failed     atomic.Pointer[error] // set once, by the writer
	syncs      atomic.Int64          // group commits synced, for tests and benchmarks
	syncTimes  syncTimes             // how long they took (Syncs)

	w writer // owned by the writer goroutine

	mu        sync.Mutex
	segs      []*segment    // in sequence order; the last is the one written
	durable   uint64        // highest synced sequence number
	acked     uint64        // highest acknowledged; written under claimMu too
	bytes     int64         // durable bytes of all segments
	full      time.Time     // when an append was last refused for space; zero after a good write
	ckpt      uint64        // highest acknowledged sequence number in the checkpoint file
	ckptAt    time.Time     // when the checkpoint was last written; under claimMu
	ckptErr   error         // why the last checkpoint write failed, nil if it did not
	durableCh chan struct{} // closed and replaced whenever durable grows
	// recent holds transactions made durable and not yet claimed, by
	// sequence number, up to Config.ClaimCache: what Claim hands over
	// without reading the files. Nothing changes a transaction once it is
	// appended, so Claim may share it with the Append's caller.
	recent map[uint64]*txn.Transaction

	claimMu sync.Mutex // serialises Claim and Ack
	// checkpoint records the highest acknowledged sequence number
	// durably; writeCheckpoint, or a fault in tests. Called under claimMu.
	checkpoint func(acked uint64) error
	claimed    uint64    // highest claimed sequence number
	cr         logReader // reads what Claim returns
}

// Open opens the log in dir, creating dir and an empty log if needed. It
// validates every record not yet acknowledged; a torn tail of the last
// segment is cut off and logged at Warn level, any other damage is returned
// as a *CorruptionError and the log is not opened. Only one Log may have a
// directory open at a time. A nil logger discards.
func Open(dir string, cfg Config, logger *slog.Logger) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := makeDir(dir); err != nil {
		return nil, err
	}
	l := &Log{
		dir:        dir,
		cfg:        cfg,
		logger:     logger,
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
		durableCh:  make(chan struct{}),
		recent:     make(map[uint64]*txn.Transaction),
	}
	l.queue = handoff.NewQueue[[]byte]("filelog: append", cfg.QueueLength, l.closing, l.writerDone)
	l.w.write, l.w.sync = (*os.File).Write, syncData
	l.checkpoint = func(acked uint64) error { return writeCheckpoint(l.dir, l.dirFile, acked) }
	l.cr.l = l
	if err := l.open(); err != nil {
		l.closeFiles()
		return nil, err
	}
	go l.run()
	return l, nil
}

// makeDir creates dir if it is missing and then syncs its parent, so that
// the directory of acknowledged records survives a crash too.
func makeDir(dir string) error {
	if _, err := os.Stat(dir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil // there already, or Open fails on it next with a clearer error
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("filelog: create directory: %w", err)
	}
	parent, err := os.Open(filepath.Dir(filepath.Clean(dir)))
	if err != nil {
		return fmt.Errorf("filelog: sync parent directory: %w", err)
	}
	defer parent.Close()
	if err := parent.Sync(); err != nil {
		return fmt.Errorf("filelog: sync parent directory: %w", err)
	}
	return nil
}

// open locks the directory, recovers the segments and opens the last one
// for appending.
func (l *Log) open() error {
	var err error
	if l.lockFile, err = os.OpenFile(filepath.Join(l.dir, lockName), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return fmt.Errorf("filelog: open lock: %w", err)
	}
	if err := lockDir(l.lockFile); err != nil {
		return fmt.Errorf("filelog: lock %s: %w", l.dir, err)
	}
	if l.dirFile, err = os.Open(l.dir); err != nil {
		return fmt.Errorf("filelog: open directory: %w", err)
	}
	if err := os.Remove(filepath.Join(l.dir, checkpointName+".tmp")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("filelog: remove stale checkpoint: %w", err)
	}
	rep, keep, reclaim, err := scan(l.dir, l.cfg.MaxRecordSize)
	if err != nil {
		return err
	}
	if len(reclaim) > 0 {
		for _, s := range reclaim {
			if err := os.Remove(filepath.Join(l.dir, s.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				// Not fatal: an acknowledged segment left behind is
				// deleted again at the next Open.
				l.logger.Warn("filelog: remove acknowledged segment", "dir", l.dir, "segment", s.name, "err", err)
			}
		}
		if err := l.dirFile.Sync(); err != nil {
			return fmt.Errorf("filelog: sync directory: %w", err)
		}
	}
	l.acked, l.claimed, l.ckpt = rep.Acked, rep.Acked, rep.Acked
	if len(keep) == 0 {
		s := segment{first: rep.Acked + 1, name: segmentName(rep.Acked + 1)}
		f, err := os.OpenFile(filepath.Join(l.dir, s.name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("filelog: create segment: %w", err)
		}
		l.w.f = f
		if err := l.dirFile.Sync(); err != nil {
			return fmt.Errorf("filelog: sync directory: %w", err)
		}
		keep = append(keep, s)
	} else {
		s := keep[len(keep)-1]
		if l.w.f, err = os.OpenFile(filepath.Join(l.dir, s.name), os.O_WRONLY|os.O_APPEND, 0); err != nil {
			return fmt.Errorf("filelog: open segment: %w", err)
		}
		if t := rep.TornTail; t != nil {
			if err := l.w.f.Truncate(s.size); err != nil {
				return fmt.Errorf("filelog: truncate torn tail: %w", err)
			}
			if err := l.w.f.Sync(); err != nil {
				return fmt.Errorf("filelog: sync segment: %w", err)
			}
			l.logger.Warn("filelog: cut off torn tail", "dir", l.dir, "segment", t.Segment,
				"offset", t.Offset, "dropped_bytes", t.Dropped, "err", t)
		}
	}
	for i := range keep {
		l.segs = append(l.segs, &keep[i])
		l.bytes += keep[i].size
	}
	last := l.segs[len(l.segs)-1]
	l.durable = max(rep.LastSeq, last.first-1)
	l.w.seg, l.w.size, l.w.next = last, last.size, l.durable+1
	l.logger.Debug("filelog: opened", "dir", l.dir, "segments", len(l.segs),
		"depth", l.durable-l.acked, "next_seq", l.w.next)
	return nil
}

// Stats reports the entries not yet acknowledged and the bytes of the
// segment files.
func (l *Log) Stats(ctx context.Context) (txlog.Stats, error) {
	if l.isClosing() {
		return txlog.Stats{}, fmt.Errorf("filelog: stats: %w", txlog.ErrClosed)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return txlog.Stats{Depth: int64(l.durable - l.acked), Bytes: l.bytes}, nil
}

// Err returns why appends fail: the error that failed the log for good,
// or a full disk that refused an append in the last few seconds. It
// returns nil while appends succeed.
func (l *Log) Err() error {
	if err := l.failure(); err != nil {
		return err
	}
	l.mu.Lock()
	full := l.full
	l.mu.Unlock()
	if !full.IsZero() && time.Since(full) < noSpaceReported {
		return fmt.Errorf("%w: an append was refused %v ago", ErrNoSpace, time.Since(full).Round(time.Millisecond))
	}
	return nil
}

// Close stops the writer: appends it has not taken fail with
// txlog.ErrClosed, a group commit under way finishes. Blocked Claims return
// txlog.ErrClosed. Close is safe to call more than once.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		close(l.closing)
		<-l.writerDone
		l.claimMu.Lock() // waits out a Claim or Ack under way
		defer l.claimMu.Unlock()
		if l.acked > l.ckpt {
			l.noteCheckpoint(l.checkpoint(l.acked), l.acked)
		}
		l.closeErr = l.closeFiles()
	})
	return l.closeErr
}

// closeFiles closes every file the log holds, the lock last.
func (l *Log) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{l.w.f, l.cr.f, l.dirFile, l.lockFile} {
		if f != nil {
			if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	l.w.f, l.cr.f, l.dirFile, l.lockFile = nil, nil, nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("filelog: close: %w", err)
	}
	return nil
}

func (l *Log) isClosing() bool {
	select {
	case <-l.closing:
		return true
	default:
		return false
	}
}

// segmentFor returns the segment that holds (or will hold) seq. The caller
// holds l.mu.
func (l *Log) segmentFor(seq uint64) (segment, bool) {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > seq }) - 1
	if i < 0 {
		return segment{}, false
	}
	return *l.segs[i], true
}
