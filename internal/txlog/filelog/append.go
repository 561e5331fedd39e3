package filelog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txlog/handoff"
	"github.com/spoolgw/spool/internal/txn"
)

// appendReq is one Append waiting for the writer, with its encoded
// transaction.
type appendReq = handoff.Request[[]byte]

// writer is the state of the writer goroutine, which alone touches it
// (Open sets it up before the goroutine starts; Close tears it down after
// the goroutine has returned).
type writer struct {
	f     *os.File // the last segment, opened for appending
	seg   *segment // the last segment; its size is published under Log.mu
	size  int64    // bytes written to f, synced or not
	next  uint64   // sequence number of the next record
	buf   []byte   // the records of the group being committed
	batch []*appendReq
	// write appends to f; (*os.File).Write, or a fault in tests.
	write func(*os.File, []byte) (int, error)
	// sync makes f's data durable; syncData, or a fault in tests.
	sync func(*os.File) error
}

// Append makes tx durable and returns its entry; the entry's Pos is its
// sequence number in decimal. Concurrent appends share one write and one
// fdatasync. ctx is honoured while the append waits for the writer; once
// the writer has taken it, Append waits for the write and its sync, and the
// transaction is durable (or the log failed) whatever ctx does.
func (l *Log) Append(ctx context.Context, tx *txn.Transaction) (txlog.Entry, error) {
	if err := l.queue.Check(ctx, tx); err != nil {
		return txlog.Entry{}, err
	}
	if err := l.failure(); err != nil {
		return txlog.Entry{}, err
	}
	payload, err := json.Marshal(tx)
	if err != nil {
		return txlog.Entry{}, fmt.Errorf("filelog: append: encode transaction: %w", err)
	}
	if len(payload) > l.cfg.MaxRecordSize {
		return txlog.Entry{}, fmt.Errorf("filelog: append: transaction of %d bytes exceeds MaxRecordSize %d",
			len(payload), l.cfg.MaxRecordSize)
	}
	return l.queue.Append(ctx, tx, payload, headerSize+len(payload))
}

// failure returns the error that failed the log, nil while it is healthy.
func (l *Log) failure() error {
	if p := l.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// run is the writer goroutine: it takes the first queued append, drains
// whatever else is already queued (never waiting for more), commits the
// group with one write and one sync, and answers it. Appends that arrive
// meanwhile queue behind the sync in flight, so groups grow with load.
func (l *Log) run() {
	defer close(l.writerDone)
	for {
		select {
		case <-l.closing:
			return
		case r := <-l.queue.Requests():
			if l.isClosing() {
				// Not taken: its Append sees writerDone and fails.
				return
			}
			l.commit(l.gather(r))
		}
	}
}

// gather returns first and every append already queued behind it, up to
// MaxBatchBytes, skipping those whose Append gave up.
func (l *Log) gather(first *appendReq) []*appendReq {
	l.w.batch = l.queue.Gather(l.w.batch[:0], first, l.cfg.MaxBatchBytes)
	return l.w.batch
}

// commit writes and syncs a group of appends and answers each of them. A
// group that does not fit the last segment is split: the part that fits is
// written and synced, then a new segment is started for the rest.
func (l *Log) commit(batch []*appendReq) {
	w := &l.w
	defer clear(w.batch) // drop the references for the collector
	if err := l.failure(); err != nil {
		answer(batch, err)
		return
	}
	w.buf = w.buf[:0]
	start, first := 0, w.next // the part not yet flushed, and its first record
	for i, r := range batch {
		n := int64(r.Size)
		if pending := w.size + int64(len(w.buf)); pending > 0 && pending+n > l.cfg.SegmentSize {
			err := l.flush(batch[start:i])
			if err == nil {
				start, first = i, w.next
				err = l.rotate()
			}
			if err != nil {
				l.refuse(err, batch[start:], first)
				return
			}
		}
		r.Entry = txlog.Entry{Pos: strconv.FormatUint(w.next, 10), Tx: r.Tx}
		w.buf = appendRecord(w.buf, w.next, r.Data)
		w.next++
	}
	if err := l.flush(batch[start:]); err != nil {
		l.refuse(err, batch[start:], first)
		return
	}
	if cap(w.buf) > 2*l.cfg.MaxBatchBytes {
		w.buf = nil // one huge record should not pin its buffer
	}
}

// refuse answers the appends of a part that was not made durable. When
// the disk was full and nothing of the part is left on it (ErrNoSpace),
// only they fail, with that error, and the next group takes their
// sequence numbers from first on; any other error fails the log.
func (l *Log) refuse(err error, reqs []*appendReq, first uint64) {
	if errors.Is(err, ErrNoSpace) {
		l.w.next, l.w.buf = first, l.w.buf[:0]
		l.noSpace(err)
		answer(reqs, err)
		return
	}
	l.fail(err, reqs)
}

// flush writes the buffered records of reqs to the last segment, syncs
// them, publishes them to Claim and answers reqs. A write that fails for
// lack of space is undone and returns an error wrapping ErrNoSpace; any
// other failure leaves the segment as it is.
func (l *Log) flush(reqs []*appendReq) error {
	w := &l.w
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.write(w.f, w.buf); err != nil {
		err = fmt.Errorf("filelog: write segment: %w", err)
		if isNoSpace(err) {
			return l.undo(err)
		}
		return err
	}
	w.size += int64(len(w.buf))
	start := time.Now()
	if err := w.sync(w.f); err != nil {
		return fmt.Errorf("filelog: sync segment: %w", err)
	}
	l.syncTimes.add(time.Since(start))
	l.syncs.Add(1)
	l.mu.Lock()
	w.seg.size = w.size
	l.bytes += int64(len(w.buf))
	l.durable = w.next - 1
	first := w.next - uint64(len(reqs)) // reqs are the records just synced
	for i, r := range reqs {
		if len(l.recent) >= l.cfg.ClaimCache {
			break
		}
		l.recent[first+uint64(i)] = r.Tx
	}
	close(l.durableCh)
	l.durableCh = make(chan struct{})
	l.full = time.Time{}
	l.mu.Unlock()
	w.buf = w.buf[:0]
	answer(reqs, nil)
	return nil
}

// undo cuts the segment back to its synced size after a write that found
// the disk full, and syncs the cut. Nothing of the group was synced or
// answered, so the cut loses nothing acknowledged, and whole records of
// the refused group cannot come back at a restart. If the cut or its sync
// fails too, the state of the file is unknown and the log fails.
func (l *Log) undo(cause error) error {
	w := &l.w
	if err := w.f.Truncate(w.size); err != nil {
		return fmt.Errorf("%w; undo it: %w", cause, err)
	}
	if err := w.sync(w.f); err != nil {
		return fmt.Errorf("%w; sync its undoing: %w", cause, err)
	}
	return fmt.Errorf("%w: %w", ErrNoSpace, cause)
}

// isNoSpace tells whether err says the disk (or the user's quota) is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// rotate starts a new segment, named for the next sequence number, and
// makes its directory entry durable before anything is written to it.
func (l *Log) rotate() error {
	w := &l.w
	s := &segment{first: w.next, name: segmentName(w.next)}
	f, err := os.OpenFile(filepath.Join(l.dir, s.name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		err = fmt.Errorf("filelog: create segment: %w", err)
		if isNoSpace(err) {
			// No directory entry was made; the next group tries again.
			return fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		return err
	}
	if err := l.dirFile.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("filelog: sync directory: %w", err)
	}
	old := w.f
	w.f, w.seg, w.size = f, s, 0
	l.mu.Lock()
	l.segs = append(l.segs, s)
	l.mu.Unlock()
	if err := old.Close(); err != nil {
		// Its records are synced already; a failed close loses nothing.
		l.logger.Warn("filelog: close segment", "dir", l.dir, "err", err)
	}
	return nil
}

// fail puts the log in the failed state for good and answers reqs with the
// error. Only the first failure is kept.
func (l *Log) fail(cause error, reqs []*appendReq) {
	err := fmt.Errorf("%w: %w", ErrFailed, cause)
	if l.failed.CompareAndSwap(nil, &err) {
		l.logger.Error("filelog: log failed; appends fail until it is reopened", "dir", l.dir, "err", cause)
	}
	answer(reqs, l.failure())
}

// noSpace notes that a group was refused for lack of space: Err reports
// it for a while, and the first refusal after a good write is logged.
func (l *Log) noSpace(err error) {
	l.mu.Lock()
	first := l.full.IsZero()
	l.full = time.Now()
	l.mu.Unlock()
	if first {
		l.logger.Error("filelog: disk full; writes are refused until space returns", "dir", l.dir, "err", err)
	}
}

func answer(reqs []*appendReq, err error) {
	for _, r := range reqs {
		if err != nil {
			r.Entry, r.Err = txlog.Entry{}, err
		}
		r.Answer()
	}
}
