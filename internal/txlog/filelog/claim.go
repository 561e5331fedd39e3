package filelog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spoolgw/spool/internal/txlog"
	"github.com/spoolgw/spool/internal/txn"
)

// Claim returns up to max durable entries past the claim cursor, in log
// order, read from the segment files. If there is none it waits until an
// append makes one durable, ctx is done, or the log closes; it never waits
// for more once one is there. After a reopen the cursor starts after the
// ack checkpoint, so entries claimed but not acknowledged come again.
func (l *Log) Claim(ctx context.Context, max int) ([]txlog.Entry, error) {
	if max <= 0 {
		return nil, fmt.Errorf("filelog: claim: max %d is not positive", max)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("filelog: claim: %w", err)
		}
		l.claimMu.Lock()
		if l.isClosing() {
			l.claimMu.Unlock()
			return nil, fmt.Errorf("filelog: claim: %w", txlog.ErrClosed)
		}
		l.mu.Lock()
		durable, wake := l.durable, l.durableCh
		l.mu.Unlock()
		if l.claimed < durable {
			entries, err := l.claim(int(min(uint64(max), durable-l.claimed)))
			l.claimMu.Unlock()
			return entries, err
		}
		l.claimMu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("filelog: claim: %w", ctx.Err())
		case <-l.closing:
			return nil, fmt.Errorf("filelog: claim: %w", txlog.ErrClosed)
		}
	}
}

// claim takes the next n entries, all durable, from those kept since
// their append (recent) or else from the files, and moves the cursor past
// them. On a read error it returns what it has read, or the error if that
// is nothing. The caller holds claimMu.
func (l *Log) claim(n int) ([]txlog.Entry, error) {
	entries := make([]txlog.Entry, 0, min(n, 1024))
	for range n {
		seq := l.claimed + 1
		l.mu.Lock()
		tx, kept := l.recent[seq]
		delete(l.recent, seq)
		l.mu.Unlock()
		e := txlog.Entry{Pos: strconv.FormatUint(seq, 10), Tx: tx}
		if !kept {
			var err error
			if e, err = l.cr.read(seq); err != nil {
				if len(entries) > 0 {
					return entries, nil // the error comes again on the next Claim
				}
				return nil, fmt.Errorf("filelog: claim: %w", err)
			}
		}
		entries = append(entries, e)
		l.claimed++
	}
	return entries, nil
}

// checkpointEvery is how often Ack records acknowledgements in the
// checkpoint file when no segment is to be deleted. The checkpoint only
// spares a restart from delivering applied entries again (the database
// skips what it has applied), so a crash costs at most this much of the
// drain delivered twice, where writing it at every Ack cost each batch
// two more fsyncs beside the appends' own.
const checkpointEvery = time.Second

// Ack acknowledges claimed entries, which must continue the acknowledged
// ones in claim order. It records the highest acknowledged sequence number
// in the checkpoint file (written atomically and synced) when a segment's
// records are now all acknowledged, and then deletes those segments; and
// otherwise at most every checkpointEvery, and at Close.
//
// A checkpoint that cannot be written (the disk is full) does not fail Ack:
// the entries were applied, and the checkpoint only spares a restart from
// delivering them again. The entries count as acknowledged, the next Ack
// writes the checkpoint again, and until one succeeds no segment is
// deleted, so that the checkpoint on disk never points past a deleted
// record.
func (l *Log) Ack(ctx context.Context, entries []txlog.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("filelog: ack: %w", err)
	}
	l.claimMu.Lock()
	defer l.claimMu.Unlock()
	if l.isClosing() {
		return fmt.Errorf("filelog: ack: %w", txlog.ErrClosed)
	}
	due := l.acked + 1
	for _, e := range entries {
		seq, err := strconv.ParseUint(e.Pos, 10, 64)
		switch {
		case err != nil || seq == 0:
			return fmt.Errorf("filelog: ack: %w: %q is not a position of this log", ErrAckOrder, e.Pos)
		case seq > l.claimed:
			return fmt.Errorf("filelog: ack: %w: entry %d was not claimed (claimed up to %d)", ErrAckOrder, seq, l.claimed)
		case seq != due:
			return fmt.Errorf("filelog: ack: %w: entry %d where %d was due", ErrAckOrder, seq, due)
		}
		due++
	}
	acked := due - 1
	l.mu.Lock()
	freed := len(l.segs) > 1 && l.segs[1].first-1 <= acked // the oldest segment goes
	l.mu.Unlock()
	var ckptErr error
	write := freed || l.ckptErr != nil || time.Since(l.ckptAt) >= checkpointEvery
	if write {
		ckptErr = l.checkpoint(acked)
	}
	l.mu.Lock()
	l.acked = acked
	if write && ckptErr == nil {
		l.ckpt = acked
	}
	var done []segment
	for i := 0; i < len(l.segs)-1 && l.segs[i+1].first-1 <= l.ckpt; i++ {
		done = append(done, *l.segs[i])
	}
	l.mu.Unlock()
	if write {
		l.noteCheckpoint(ckptErr, acked)
	}
	l.reclaim(done)
	return nil
}

// noteCheckpoint logs the first checkpoint write that fails and the first
// that succeeds after it, not every one between. The caller holds claimMu.
func (l *Log) noteCheckpoint(err error, acked uint64) {
	switch {
	case err != nil && l.ckptErr == nil:
		l.logger.Warn("filelog: cannot record acknowledgements; applied entries would be delivered again (and skipped) after a restart, and no segment is reclaimed, until it can",
			"dir", l.dir, "acked", acked, "err", err)
	case err == nil && l.ckptErr != nil:
		l.logger.Info("filelog: acknowledgements recorded again", "dir", l.dir, "acked", acked)
	}
	l.ckptErr = err
	if err == nil {
		l.ckptAt = time.Now()
	}
}

// reclaim deletes fully acknowledged segments, the oldest first, and drops
// them from the log. A segment that cannot be deleted stays (with those
// after it) and is tried again at the next Ack or Open; nothing depends on
// its going. The caller holds claimMu.
func (l *Log) reclaim(done []segment) {
	removed := 0
	var freed int64
	for _, s := range done {
		if l.cr.f != nil && l.cr.seg.name == s.name {
			l.cr.close()
		}
		if err := os.Remove(filepath.Join(l.dir, s.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.logger.Warn("filelog: remove acknowledged segment", "dir", l.dir, "segment", s.name, "err", err)
			break
		}
		removed++
		freed += s.size
	}
	if removed == 0 {
		return
	}
	l.mu.Lock()
	clear(l.segs[:removed])
	l.segs = l.segs[removed:]
	l.bytes -= freed
	l.mu.Unlock()
}

// Pending calls fn for every durable entry not yet acknowledged, claimed or
// not, in log order, reading the segment files. It stops at the first
// error fn returns and returns it.
func (l *Log) Pending(ctx context.Context, fn func(txlog.Entry) error) error {
	if l.isClosing() {
		return fmt.Errorf("filelog: pending: %w", txlog.ErrClosed)
	}
	l.mu.Lock()
	seq, last := l.acked+1, l.durable
	l.mu.Unlock()
	lr := logReader{l: l}
	defer lr.close()
	for ; seq <= last; seq++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("filelog: pending: %w", err)
		}
		if l.isClosing() {
			return fmt.Errorf("filelog: pending: %w", txlog.ErrClosed)
		}
		e, err := lr.read(seq)
		if errors.Is(err, fs.ErrNotExist) {
			// Acknowledged and reclaimed since Pending started?
			l.mu.Lock()
			acked := l.acked
			l.mu.Unlock()
			if acked >= seq {
				seq = acked // the loop goes on at acked+1
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("filelog: pending: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// logReader reads entries by sequence number, keeping its place in one
// segment so that reading them in order costs no search.
type logReader struct {
	l   *Log
	f   *os.File
	seg segment // the segment f reads, with its durable size when last seen
	rd  reader
	off int64  // offset of record seq in seg
	seq uint64 // sequence number of the record at off
}

// read returns the entry numbered seq, which must be durable. An error
// wrapping fs.ErrNotExist says its segment was deleted.
func (lr *logReader) read(seq uint64) (txlog.Entry, error) {
	if lr.f == nil || lr.seq != seq || lr.off >= lr.seg.size {
		lr.l.mu.Lock()
		s, ok := lr.l.segmentFor(seq)
		lr.l.mu.Unlock()
		if !ok {
			return txlog.Entry{}, fmt.Errorf("no segment holds record %d", seq)
		}
		if lr.f == nil || lr.seg.name != s.name {
			lr.close()
			f, err := os.Open(filepath.Join(lr.l.dir, s.name))
			if err != nil {
				return txlog.Entry{}, fmt.Errorf("open segment: %w", err)
			}
			lr.f, lr.off, lr.seq = f, 0, s.first
			lr.rd.reset(f)
		}
		lr.seg = s
		if lr.seq > seq {
			lr.off, lr.seq = 0, s.first
		}
		if err := lr.skip(seq); err != nil {
			return txlog.Entry{}, err
		}
	}
	got, payload, n, err := lr.rd.record(lr.off, lr.seg.size, lr.l.cfg.MaxRecordSize)
	if err == nil && got != seq {
		err = fmt.Errorf("%w: record %d where %d was due", errSequence, got, seq)
	}
	if err != nil {
		if isDecodeError(err) || errors.Is(err, errSequence) {
			err = &CorruptionError{Segment: lr.seg.name, Offset: lr.off, Err: err}
		}
		return txlog.Entry{}, err
	}
	tx, err := txn.Decode(payload)
	if err != nil {
		return txlog.Entry{}, &CorruptionError{Segment: lr.seg.name, Offset: lr.off, Err: err}
	}
	lr.off += n
	lr.seq++
	return txlog.Entry{Pos: strconv.FormatUint(seq, 10), Tx: tx}, nil
}

// skip moves forward over records, reading only their headers, until the
// record at off is seq. Open validated them already.
func (lr *logReader) skip(seq uint64) error {
	for lr.seq < seq {
		h, err := lr.rd.window(lr.off, headerSize, lr.seg.size)
		if err != nil {
			return &CorruptionError{Segment: lr.seg.name, Offset: lr.off, Err: err}
		}
		hd := decodeHeader(h)
		if !plausible(hd.length, lr.l.cfg.MaxRecordSize) {
			return &CorruptionError{Segment: lr.seg.name, Offset: lr.off, Err: fmt.Errorf("%w: %d bytes", errLength, hd.length)}
		}
		lr.off += headerSize + int64(hd.length)
		lr.seq++
	}
	return nil
}

func (lr *logReader) close() {
	if lr.f != nil {
		_ = lr.f.Close()
	}
	lr.f, lr.seg, lr.off, lr.seq = nil, segment{}, 0, 0
	lr.rd.reset(nil)
}
