package filelog

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// CorruptionError reports a record that cannot be read back and that is not
// a torn tail: a bad record followed by a valid one, a bad record in a
// segment other than the last, records missing between segments, or an
// unreadable ack checkpoint. The log refuses to open over it; nothing is
// skipped silently.
type CorruptionError struct {
	// Segment is the file name, within the log directory, of the segment
	// (or checkpoint) that is corrupt.
	Segment string
	// Offset is the byte offset of the bad record in Segment.
	Offset int64
	// Err says what is wrong.
	Err error
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("filelog: corrupt log: %s at offset %d: %v", e.Segment, e.Offset, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

// TornTailError describes the end of the last segment that Open cut off: an
// incomplete or corrupt record after which the segment holds no valid
// record, as a crash in the middle of a write leaves it. Those bytes were
// never synced, so no Append had returned them. Open logs it at Warn level;
// Check reports it.
type TornTailError struct {
	// Segment is the file name of the last segment.
	Segment string
	// Offset is where the bad record starts; the segment is truncated to
	// this length.
	Offset int64
	// Dropped is the number of bytes cut off.
	Dropped int64
	// Err says what was wrong with the record at Offset.
	Err error
}

func (e *TornTailError) Error() string {
	return fmt.Sprintf("filelog: torn tail: %s at offset %d (%d bytes): %v", e.Segment, e.Offset, e.Dropped, e.Err)
}

func (e *TornTailError) Unwrap() error { return e.Err }

// Report is what Check found in a log directory.
type Report struct {
	// Acked is the highest acknowledged sequence number (the checkpoint).
	Acked uint64
	// Segments lists the segment files in sequence order.
	Segments []SegmentReport
	// Records counts the records found in the segments that were scanned.
	Records int64
	// FirstSeq and LastSeq are the first and last sequence numbers found,
	// 0 when there is no record.
	FirstSeq, LastSeq uint64
	// TornTail is the incomplete end of the last segment, which Open would
	// cut off; nil if there is none.
	TornTail *TornTailError
	// Corruption is the corruption that stops Open; nil if there is none.
	Corruption *CorruptionError
}

// SegmentReport describes one segment file.
type SegmentReport struct {
	Name string
	Size int64
	// Records, FirstSeq and LastSeq describe the valid records found.
	Records           int64
	FirstSeq, LastSeq uint64
	// Reclaimable is true for a segment whose records are all
	// acknowledged; Open deletes it without reading it, so it is not
	// scanned.
	Reclaimable bool
}

// Check scans the log in dir read-only, validating every record as Open
// does, and reports what it found. The error is non-nil if the log cannot
// be read or is corrupt (then it is the *CorruptionError, also in
// Report.Corruption); a torn tail is not an error, as Open repairs it. The
// report is filled in as far as the scan got. Check takes no lock: run on
// a log in use, the tail being written may show as torn. It accepts
// records of any length the format allows, whatever MaxRecordSize the log
// was opened with.
func Check(dir string) (Report, error) {
	rep, _, _, err := scan(dir, math.MaxUint32)
	return rep, err
}

// scan validates the log in dir. It returns the report, the segments to
// keep (the last one's size cut to before a torn tail) and the fully
// acknowledged segments that may be deleted unread.
func scan(dir string, maxPayload int) (rep Report, keep, reclaim []segment, err error) {
	defer func() {
		var ce *CorruptionError
		if errors.As(err, &ce) {
			rep.Corruption = ce
		}
	}()
	if rep.Acked, err = readCheckpoint(dir); err != nil {
		return rep, nil, nil, err
	}
	all, err := listSegments(dir)
	if err != nil {
		return rep, nil, nil, err
	}
	for i, s := range all {
		if i < len(all)-1 && all[i+1].first-1 <= rep.Acked {
			reclaim = append(reclaim, s)
			rep.Segments = append(rep.Segments, SegmentReport{Name: s.name, Size: s.size, Reclaimable: true})
			continue
		}
		keep = append(keep, s)
	}
	if len(keep) == 0 {
		return rep, nil, reclaim, nil
	}
	if keep[0].first > rep.Acked+1 {
		return rep, nil, nil, &CorruptionError{Segment: keep[0].name, Err: fmt.Errorf(
			"%w: %d to %d, after the acknowledged %d", errMissing, rep.Acked+1, keep[0].first-1, rep.Acked)}
	}
	for i := range keep {
		s := &keep[i]
		last := i == len(keep)-1
		res, err := scanFile(filepath.Join(dir, s.name), *s, last, maxPayload)
		sr := SegmentReport{Name: s.name, Size: s.size, Records: res.records}
		if res.records > 0 {
			sr.FirstSeq, sr.LastSeq = s.first, res.lastSeq
			if rep.FirstSeq == 0 {
				rep.FirstSeq = s.first
			}
			rep.LastSeq = res.lastSeq
		}
		rep.Segments = append(rep.Segments, sr)
		rep.Records += res.records
		if err != nil {
			return rep, nil, nil, err
		}
		if !last && res.lastSeq != keep[i+1].first-1 {
			return rep, nil, nil, &CorruptionError{Segment: s.name, Offset: res.end, Err: fmt.Errorf(
				"%w: segment ends at record %d, the next starts at %d", errMissing, res.lastSeq, keep[i+1].first)}
		}
		if last {
			rep.TornTail = res.torn
			if res.lastSeq < rep.Acked {
				return rep, nil, nil, &CorruptionError{Segment: checkpointName, Err: fmt.Errorf(
					"%w: checkpoint acknowledges up to %d, past the last record %d", errMissing, rep.Acked, res.lastSeq)}
			}
		}
		s.size = res.end
	}
	return rep, keep, reclaim, nil
}

func scanFile(path string, s segment, last bool, maxPayload int) (segmentScan, error) {
	f, err := os.Open(path)
	if err != nil {
		return segmentScan{lastSeq: s.first - 1}, fmt.Errorf("filelog: open segment: %w", err)
	}
	defer f.Close()
	return scanSegment(f, s.name, s.size, s.first, last, maxPayload, nil)
}

// segmentScan is what scanSegment found in one segment.
type segmentScan struct {
	records int64
	// lastSeq is the sequence number of the last valid record, first-1 if
	// there is none.
	lastSeq uint64
	// end is the offset just past the last valid record.
	end int64
	// torn is the torn tail found in a last segment, nil if none.
	torn *TornTailError
}

// scanSegment validates the records of one segment of size bytes, whose
// first record must be first and each next one the next number. fn, if not
// nil, is called with every valid record. In a segment other than the last,
// any bad record is a *CorruptionError. In the last, a bad record is a torn
// tail if no valid record follows it (found by trying every later offset),
// and a *CorruptionError otherwise. Other errors are the file's.
func scanSegment(ra io.ReaderAt, name string, size int64, first uint64, last bool, maxPayload int, fn func(off int64, seq uint64)) (segmentScan, error) {
	var rd reader
	rd.reset(ra)
	res := segmentScan{lastSeq: first - 1}
	var off int64
	for off < size {
		seq, _, n, err := rd.record(off, size, maxPayload)
		if err != nil && !isDecodeError(err) {
			return res, err
		}
		if err == nil && seq != res.lastSeq+1 {
			return res, &CorruptionError{Segment: name, Offset: off, Err: fmt.Errorf(
				"%w: record %d where %d was due", errSequence, seq, res.lastSeq+1)}
		}
		if err != nil {
			if !last {
				return res, &CorruptionError{Segment: name, Offset: off, Err: err}
			}
			at, found, ferr := findRecord(&rd, off, size, res.lastSeq+1, maxPayload)
			if ferr != nil {
				return res, ferr
			}
			if found {
				return res, &CorruptionError{Segment: name, Offset: off, Err: fmt.Errorf(
					"%w (a valid record follows at offset %d)", err, at)}
			}
			res.torn = &TornTailError{Segment: name, Offset: off, Dropped: size - off, Err: err}
			break
		}
		if fn != nil {
			fn(off, seq)
		}
		res.records++
		res.lastSeq = seq
		off += n
	}
	res.end = off
	return res, nil
}

// findRecord looks for a valid record anywhere after the bad one at bad,
// byte by byte. A candidate must have a plausible length that fits the
// segment and a sequence number that could follow due, the number the bad
// record should have had, before its checksum is even computed: that keeps
// the search fast over zeroes and garbage and makes a false find in random
// bytes vanishingly unlikely.
func findRecord(rd *reader, bad, size int64, due uint64, maxPayload int) (at int64, found bool, err error) {
	maxSeq := due + uint64((size-bad)/(headerSize+1))
	for o := bad + 1; o+headerSize <= size; o++ {
		h, err := rd.window(o, headerSize, size)
		if err != nil {
			return 0, false, err
		}
		hd := decodeHeader(h)
		if !plausible(hd.length, maxPayload) || hd.length > uint32(min(size-o-headerSize, math.MaxUint32)) ||
			hd.seq < due || hd.seq > maxSeq {
			continue
		}
		b, err := rd.window(o, headerSize+int(hd.length), size)
		if err != nil {
			return 0, false, err
		}
		if checksum(hd.seq, b[headerSize:]) == hd.crc {
			return o, true, nil
		}
	}
	return 0, false, nil
}
