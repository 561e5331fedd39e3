package telemetry

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spoolgw/spool/internal/schema"
)

// Replay: the spill files read back, oldest first, in chunks.

// spillChunk is a run of records of the oldest file: rows of one shape to
// insert, and the records that no longer fit the table.
type spillChunk struct {
	file     *spillFile
	rows     []sample
	rejected []error
	records  int64 // len(rows) + len(rejected)
	end      int64 // byte offset after the last record
	// cancelled is set when the count cap removed the file before the
	// chunk was committed: its rows are counted as dropped.
	cancelled bool
}

// next returns the next chunk of up to n records from the oldest file, all
// rows of one shape, or nil when nothing is left. The same chunk must be
// committed (after its rows are in the database) before next is called
// again. A file that cannot be read is dropped, its rows counted.
func (s *spill) next(n int) *spillChunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.files) > 0 {
		f := s.files[0]
		if f.done >= f.rows {
			s.finishLocked(f)
			continue
		}
		if f == s.wFile {
			s.sealLocked()
		}
		if s.r == nil || s.r.file != f {
			if s.r != nil {
				s.r.close()
			}
			r, err := s.openReader(f)
			if err != nil {
				s.logger.Error("spill: cannot read file; its rows are dropped", "file", filepath.Join(s.dir, f.name), "err", err)
				s.dropLocked(f)
				continue
			}
			s.r = r
		}
		ch, err := s.r.read(f, n)
		if err != nil || ch.records == 0 {
			if err == nil {
				err = errors.New("fewer records than counted")
			}
			s.logger.Error("spill: cannot read file; the rest of its rows are dropped", "file", filepath.Join(s.dir, f.name), "err", err)
			s.dropLocked(f)
			continue
		}
		s.out = ch
		return ch
	}
	return nil
}

// commit records that ch is in the database (or was refused for good).
func (s *spill) commit(ch *spillChunk) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch.cancelled {
		return nil
	}
	s.out = nil
	f := ch.file
	f.done += ch.records
	f.doneOff = ch.end
	s.pending -= ch.records
	// The checkpoint first, even for a finished file: if the removal below
	// is lost in a crash, the file is not replayed twice.
	path := filepath.Join(s.dir, f.name) + doneExt
	if err := writeFileSync(path, fmt.Appendf(nil, "%d %d\n", f.done, f.doneOff)); err != nil {
		return fmt.Errorf("spill: checkpoint %s: %w", path, err)
	}
	if f.done >= f.rows {
		s.finishLocked(f)
	}
	return nil
}

// spillReader reads one file's records after its checkpoint.
type spillReader struct {
	file  *spillFile
	table *schema.Table
	fh    *os.File
	cr    *csv.Reader
	base  int64 // offset in the file at which cr starts
	// idx maps a header column to the table's column, -1 if the table has
	// it no more.
	idx    []int
	header []string
	ahead  *spillRecord // read, of another shape than the chunk before
}

type spillRecord struct {
	s   sample
	err error
	end int64
}

func (s *spill) openReader(f *spillFile) (*spillReader, error) {
	fh, err := os.Open(filepath.Join(s.dir, f.name))
	if err != nil {
		return nil, err
	}
	r := &spillReader{file: f, table: s.table, fh: fh}
	cr := csv.NewReader(io.NewSectionReader(fh, 0, f.size))
	r.header, err = cr.Read()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("read header: %w", err)
	}
	r.idx = make([]int, len(r.header))
	for j, name := range r.header {
		i, ok := s.colIndex[name]
		if !ok {
			i = -1
		}
		r.idx[j] = i
	}
	r.cr = cr
	if f.doneOff > 0 {
		r.base = f.doneOff
		r.cr = csv.NewReader(io.NewSectionReader(fh, f.doneOff, f.size-f.doneOff))
		r.cr.FieldsPerRecord = len(r.header)
	}
	return r, nil
}

func (r *spillReader) close() { r.fh.Close() }

// read returns a chunk of up to n records of f after its checkpoint.
func (r *spillReader) read(f *spillFile, n int) (*spillChunk, error) {
	ch := &spillChunk{file: f, end: f.doneOff}
	for ch.records < int64(n) && f.done+ch.records < f.rows {
		rec := r.ahead
		r.ahead = nil
		if rec == nil {
			cells, err := r.cr.Read()
			if err != nil {
				return ch, err
			}
			rec = &spillRecord{end: r.base + r.cr.InputOffset()}
			rec.s, rec.err = r.decode(cells)
		}
		if rec.err == nil && len(ch.rows) > 0 && !sameShape(ch.rows[0], rec.s) {
			r.ahead = rec
			break
		}
		if rec.err != nil {
			ch.rejected = append(ch.rejected, rec.err)
		} else {
			ch.rows = append(ch.rows, rec.s)
		}
		ch.records++
		ch.end = rec.end
	}
	return ch, nil
}

// decode turns a record into a sample of the table as it is now.
func (r *spillReader) decode(cells []string) (sample, error) {
	return decodeRecord(r.idx, r.header, cells, r.table)
}

// decodeRecord maps the cells of a record, by its file's header, onto the
// columns of t.
func decodeRecord(idx []int, header, cells []string, t *schema.Table) (sample, error) {
	s := make(sample, len(t.Columns))
	for i := range s {
		s[i] = omitted{}
	}
	for j, cell := range cells {
		i := idx[j]
		if i < 0 {
			if cell != "" {
				return nil, fmt.Errorf("column %q of table %q no longer exists", header[j], t.Name)
			}
			continue
		}
		c := t.Columns[i]
		v, err := decodeCell(c, cell)
		if err != nil {
			return nil, &schema.ValueError{Table: t.Name, Column: c.Name, Problem: err.Error()}
		}
		s[i] = v
	}
	return s, nil
}
