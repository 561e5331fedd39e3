package filelog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// segmentExt ends every segment file name; the rest of the name is the
// first sequence number the segment holds, as 20 decimal digits so that
// name order is sequence order.
const segmentExt = ".seg"

// segmentName is the file name of the segment whose first record is first.
func segmentName(first uint64) string {
	return fmt.Sprintf("%020d%s", first, segmentExt)
}

// parseSegmentName returns the first sequence number named by a segment
// file name, and whether name is one.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || first == 0 {
		return 0, false
	}
	return first, true
}

// segment is one segment file as the log knows it.
type segment struct {
	// first is the sequence number of the segment's first record, the one
	// in its name; the segment holds the sequence numbers from first up to
	// the next segment's first, exclusive.
	first uint64
	name  string
	// size is the segment's durable length in bytes: every byte below it
	// is a synced, valid record.
	size int64
}

// listSegments returns the segment files in dir in sequence order. Other
// files are ignored.
func listSegments(dir string) ([]segment, error) {
	des, err := os.ReadDir(dir) // sorted by name, so by first
	if err != nil {
		return nil, fmt.Errorf("filelog: list segments: %w", err)
	}
	var segs []segment
	for _, de := range des {
		first, ok := parseSegmentName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			return nil, fmt.Errorf("filelog: list segments: %w", err)
		}
		segs = append(segs, segment{first: first, name: de.Name(), size: info.Size()})
	}
	return segs, nil
}

// readBufferSize is the read-ahead of a reader: large enough to hold a few
// hundred typical records per read call, small enough that every reader
// (claim, pending, recovery) costs little memory.
const readBufferSize = 64 << 10

// reader reads records of one segment through a small read-ahead buffer.
// It never reads at or past the limit its caller gives, so it never sees a
// record the writer has not finished.
type reader struct {
	ra   io.ReaderAt
	buf  []byte
	boff int64 // file offset of buf[0]
	blen int   // valid bytes in buf
}

// reset points r at another file and forgets what it had read.
func (r *reader) reset(ra io.ReaderAt) {
	r.ra = ra
	r.blen = 0
}

// window returns the n bytes at off; none of them may be at or past limit,
// else the error is errShortRecord. The slice is valid until the next call.
func (r *reader) window(off int64, n int, limit int64) ([]byte, error) {
	if off >= r.boff && off+int64(n) <= r.boff+int64(r.blen) {
		return r.buf[off-r.boff : off-r.boff+int64(n)], nil
	}
	if off < 0 || limit-off < int64(n) {
		return nil, errShortRecord
	}
	if n > readBufferSize {
		// A record larger than the buffer is read alone and not kept, so
		// one large transaction does not keep a large buffer alive.
		b := make([]byte, n)
		if err := readFull(r.ra, b, off); err != nil {
			return nil, err
		}
		return b, nil
	}
	if r.buf == nil {
		r.buf = make([]byte, readBufferSize)
	}
	want := int(min(int64(len(r.buf)), limit-off))
	r.blen = 0
	if err := readFull(r.ra, r.buf[:want], off); err != nil {
		return nil, err
	}
	r.boff, r.blen = off, want
	return r.buf[:n], nil
}

// record decodes the record at off, reading nothing at or past limit. A
// decode failure is one of errShortRecord, errLength or errChecksum
// (possibly wrapped); any other error is the file's.
func (r *reader) record(off, limit int64, maxPayload int) (seq uint64, payload []byte, size int64, err error) {
	h, err := r.window(off, headerSize, limit)
	if err != nil {
		return 0, nil, 0, err
	}
	hd := decodeHeader(h)
	if !plausible(hd.length, maxPayload) {
		return 0, nil, 0, fmt.Errorf("%w: %d bytes", errLength, hd.length)
	}
	b, err := r.window(off, headerSize+int(hd.length), limit)
	if err != nil {
		return 0, nil, 0, err
	}
	seq, payload, n, err := decodeRecord(b, maxPayload)
	return seq, payload, int64(n), err
}

// readFull reads len(b) bytes at off. A file shorter than that is
// errShortRecord: a reader's limit said the bytes were there.
func readFull(ra io.ReaderAt, b []byte, off int64) error {
	n, err := ra.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return errShortRecord
	}
	return fmt.Errorf("filelog: read segment: %w", err)
}

// isDecodeError reports whether err says the bytes are not a valid record,
// as opposed to failing to read them.
func isDecodeError(err error) bool {
	return errors.Is(err, errShortRecord) || errors.Is(err, errLength) || errors.Is(err, errChecksum)
}
