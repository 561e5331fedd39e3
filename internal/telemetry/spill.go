package telemetry

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spoolgw/spool/internal/schema"
)

// spill holds the batches of one table that the database could not take,
// in CSV files in a directory of the table's own, until they are replayed.
//
// Files are named SEQ-HOUR.csv (SEQ a 12-digit counter, so names sort in
// the order written; HOUR the UTC hour, e.g. 2026-11-23T21). A file starts
// with a header of column names; each record is one row, a cell per column
// (see appendCell). Each append is one write and one fsync. A file is
// rotated when the hour changes or it would pass its size cap, and sealed
// when the replay reaches it (replay reads only files nobody appends to);
// a process never appends to a file an earlier process wrote. When a new
// file would pass the count cap, the oldest file is removed and its rows
// counted as dropped.
//
// Replay reads the oldest file in chunks; after each chunk is in the
// database, SEQ-HOUR.csv.done records how many records, and how many
// bytes, are done (temp file, fsync, rename, fsync of the directory), so a
// restart resumes after them; a replayed file is removed. A torn last line
// (a crash during an append) is ignored at open.
//
// Only the lane's writer calls the methods that change files; mu lets the
// status handler read the figures meanwhile.
type spill struct {
	dir          string
	table        *schema.Table
	colIndex     map[string]int
	maxFileBytes int64
	maxFiles     int
	logger       *slog.Logger

	mu      sync.Mutex
	files   []*spillFile // oldest first
	w       *os.File     // open for appends: wFile, the newest file
	wFile   *spillFile
	wHour   string
	r       *spillReader // reading files[0]
	out     *spillChunk  // handed out by next, not yet committed
	nextSeq uint64
	pending int64  // records not yet replayed
	bytes   int64  // size of the files
	dropped uint64 // records removed by the count cap or lost to unreadable files
}

// spillFile is one file's bookkeeping.
type spillFile struct {
	name string
	rows int64 // records, without the header
	size int64 // bytes of complete lines
	// done records, ending at byte offset doneOff, are in the database.
	done    int64
	doneOff int64
}

// spillStats are a spill's figures.
type spillStats struct {
	files   int
	pending int64
	bytes   int64
	dropped uint64
}

const (
	spillExt   = ".csv"
	doneExt    = ".done"
	hourLayout = "2006-01-02T15"
)

// openSpill opens the spill directory of table t, creating it if need be,
// and takes stock of the files an earlier process left.
func openSpill(dir string, t *schema.Table, maxFileBytes int64, maxFiles int, logger *slog.Logger) (*spill, error) {
	s := &spill{dir: dir, table: t, colIndex: make(map[string]int, len(t.Columns)),
		maxFileBytes: maxFileBytes, maxFiles: maxFiles, logger: logger, nextSeq: 1}
	for i, c := range t.Columns {
		s.colIndex[c.Name] = i
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open spill directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open spill directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			os.Remove(filepath.Join(dir, name)) // an unfinished checkpoint
		case strings.HasSuffix(name, spillExt):
			seq, ok := parseSeq(name)
			if !ok {
				logger.Warn("spill directory: ignoring a file spool did not write", "file", filepath.Join(dir, name))
				continue
			}
			s.nextSeq = max(s.nextSeq, seq+1)
			names = append(names, name)
		}
	}
	slices.Sort(names) // SEQ is zero-padded: name order is write order
	for _, name := range names {
		f, err := s.load(name)
		if err != nil {
			return nil, err
		}
		if f.done >= f.rows {
			s.removeFiles(f)
			continue
		}
		s.files = append(s.files, f)
		s.pending += f.rows - f.done
		s.bytes += f.size
	}
	// Checkpoints of files that are gone.
	for _, e := range entries {
		if base, ok := strings.CutSuffix(e.Name(), doneExt); ok {
			if _, err := os.Stat(filepath.Join(dir, base)); errors.Is(err, os.ErrNotExist) {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	if len(s.files) > 0 {
		logger.Info("telemetry spill files to replay", "table", t.Name, "files", len(s.files), "rows", s.pending)
	}
	return s, nil
}

func parseSeq(name string) (uint64, bool) {
	seqText, _, ok := strings.Cut(name, "-")
	if !ok || len(seqText) != 12 {
		return 0, false
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	return seq, err == nil
}

// load counts the complete records of a file an earlier process wrote and
// reads its checkpoint.
func (s *spill) load(name string) (*spillFile, error) {
	path := filepath.Join(s.dir, name)
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open spill file: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("open spill file: %w", err)
	}
	end, err := lastLineEnd(fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("read spill file %s: %w", path, err)
	}
	if end < st.Size() {
		s.logger.Warn("spill file: ignoring a torn last line", "file", path, "bytes", st.Size()-end)
	}
	f := &spillFile{name: name}
	cr := csv.NewReader(io.NewSectionReader(fh, 0, end))
	if _, err := cr.Read(); err != nil {
		if !errors.Is(err, io.EOF) {
			s.logger.Warn("spill file: unreadable header; file dropped", "file", path, "err", err)
		}
		return f, nil // no records: removed by the caller
	}
	f.size = cr.InputOffset()
	for {
		_, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.logger.Warn("spill file: unreadable record; the rest of the file is dropped", "file", path,
				"record", f.rows, "bytes_dropped", end-f.size, "err", err)
			break
		}
		f.rows++
		f.size = cr.InputOffset()
	}
	if b, err := os.ReadFile(path + doneExt); err == nil {
		var done, off int64
		if _, err := fmt.Sscanf(string(b), "%d %d", &done, &off); err == nil && done >= 0 && done <= f.rows && off <= f.size {
			f.done, f.doneOff = done, off
		} else {
			s.logger.Warn("spill file: unreadable checkpoint; replaying the whole file", "file", path+doneExt)
		}
	}
	return f, nil
}

// lastLineEnd returns the offset just past the last newline of the first
// size bytes of f (0 if there is none).
func lastLineEnd(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// append writes rows to the newest file, rotating first if the hour
// changed or the file would pass its size cap, and fsyncs. On an error
// nothing of rows is kept.
func (s *spill) append(rows []sample) error {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	cells := make([]string, len(s.table.Columns))
	var cell []byte
	for _, row := range rows {
		for i, v := range row {
			var err error
			if cell, err = appendCell(cell[:0], v); err != nil {
				return fmt.Errorf("spill: column %q: %w", s.table.Columns[i].Name, err)
			}
			cells[i] = string(cell)
		}
		if err := cw.Write(cells); err != nil {
			return fmt.Errorf("spill: encode: %w", err)
		}
	}
	cw.Flush()

	s.mu.Lock()
	defer s.mu.Unlock()
	hour := time.Now().UTC().Format(hourLayout)
	if s.w != nil && (s.wHour != hour || (s.wFile.rows > 0 && s.wFile.size+int64(buf.Len()) > s.maxFileBytes)) {
		s.sealLocked()
	}
	if s.w == nil {
		if err := s.createLocked(hour); err != nil {
			return err
		}
	}
	f := s.wFile
	_, err := s.w.Write(buf.Bytes())
	if err == nil {
		err = s.w.Sync()
	}
	if err != nil {
		// Whatever reached the file is not trusted: cut it off and leave
		// the file; the next append starts a new one.
		_ = s.w.Truncate(f.size)
		s.sealLocked()
		return fmt.Errorf("spill: write %s: %w", filepath.Join(s.dir, f.name), err)
	}
	f.rows += int64(len(rows))
	f.size += int64(buf.Len())
	s.pending += int64(len(rows))
	s.bytes += int64(buf.Len())
	return nil
}

// createLocked starts a new file with its header, removing the oldest
// files first if the count cap demands it.
func (s *spill) createLocked(hour string) error {
	for len(s.files) >= s.maxFiles {
		s.removeOldestLocked()
	}
	name := fmt.Sprintf("%012d-%s%s", s.nextSeq, hour, spillExt)
	s.nextSeq++
	path := filepath.Join(s.dir, name)
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("spill: create file: %w", err)
	}
	var hdr bytes.Buffer
	cw := csv.NewWriter(&hdr)
	names := make([]string, len(s.table.Columns))
	for i, c := range s.table.Columns {
		names[i] = c.Name
	}
	_ = cw.Write(names) // a bytes.Buffer does not fail
	cw.Flush()
	if _, err := fh.Write(hdr.Bytes()); err != nil {
		fh.Close()
		os.Remove(path)
		return fmt.Errorf("spill: write header of %s: %w", path, err)
	}
	if err := syncDir(s.dir); err != nil {
		fh.Close()
		os.Remove(path)
		return fmt.Errorf("spill: %w", err)
	}
	f := &spillFile{name: name, size: int64(hdr.Len())}
	s.files = append(s.files, f)
	s.bytes += f.size
	s.w, s.wFile, s.wHour = fh, f, hour
	return nil
}

// sealLocked closes the file open for appends; it is never appended to
// again.
func (s *spill) sealLocked() {
	if s.w == nil {
		return
	}
	if err := s.w.Close(); err != nil {
		s.logger.Warn("spill: close file", "file", filepath.Join(s.dir, s.wFile.name), "err", err)
	}
	s.w, s.wFile = nil, nil
}

// removeOldestLocked removes the oldest file and counts what it held
// that was not replayed as dropped.
func (s *spill) removeOldestLocked() {
	f := s.files[0]
	lost := f.rows - f.done
	s.logger.Warn("telemetry spill full: removed the oldest file", "table", s.table.Name,
		"file", filepath.Join(s.dir, f.name), "rows_dropped", lost, "max_files", s.maxFiles)
	s.dropLocked(f)
}

// dropLocked removes file f, the oldest, counting the rows not replayed
// as dropped.
func (s *spill) dropLocked(f *spillFile) {
	if s.out != nil && s.out.file == f {
		s.out.cancelled = true // the lane must not write a chunk counted as dropped
		s.out = nil
	}
	lost := f.rows - f.done
	s.dropped += uint64(lost)
	s.pending -= lost
	s.finishLocked(f)
}

// finishLocked forgets file f, the oldest, and removes it from disk.
func (s *spill) finishLocked(f *spillFile) {
	if s.r != nil && s.r.file == f {
		s.r.close()
		s.r = nil
	}
	if f == s.wFile {
		s.sealLocked()
	}
	s.bytes -= f.size
	s.files = slices.DeleteFunc(s.files, func(x *spillFile) bool { return x == f })
	s.removeFiles(f)
}

func (s *spill) removeFiles(f *spillFile) {
	path := filepath.Join(s.dir, f.name)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logger.Error("spill: remove replayed file", "file", path, "err", err)
	}
	if err := os.Remove(path + doneExt); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logger.Error("spill: remove checkpoint", "file", path+doneExt, "err", err)
	}
}

// close closes the open files. The spill files stay for the next start.
func (s *spill) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealLocked()
	if s.r != nil {
		s.r.close()
		s.r = nil
	}
}

func (s *spill) stats() spillStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return spillStats{files: len(s.files), pending: s.pending, bytes: s.bytes, dropped: s.dropped}
}

// hasPending reports whether records wait to be replayed.
func (s *spill) hasPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending > 0
}

// writeFileSync writes a small file durably: a temporary file, fsync,
// rename over path, fsync of the directory.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
