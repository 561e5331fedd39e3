package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spoolgw/spool/internal/applier"
)

// minimalFileDrain runs the least a drain from a local log into SQLite
// does, on n transactions of the shape spool's log holds, and returns its
// rows/s and the CPU time its processes (the bench) used. The
// transactions' JSON, one per line in a file of the bench's (written and
// synced beforehand, outside the measurement), is read back a batch of the
// applier's size at a time and decoded as the logs decode it
// (txn.Decode); each batch's rows are written into db with one multi-row
// INSERT in a transaction of their own; the next batch is read and decoded
// while one is written, as in spool. Nothing is acknowledged (a local
// log's acknowledgement is a position in memory, checkpointed now and
// then), and there is no overlay to evict, no record of what was applied,
// no status: the floor under any drain of a log on this disk into SQLite.
func (b *bench) minimalFileDrain(ctx context.Context, db benchDB, n int, groups cpuGroups) (float64, cpuSpan, error) {
	tag := fmt.Sprintf("minimal%d", time.Now().UnixNano())
	path, err := fillFile(b.env.dir, tag, n)
	if err != nil {
		return 0, cpuSpan{}, err
	}
	defer os.Remove(path)

	var cpu cpuMeter
	cpu.begin()
	start := time.Now()
	if err := drainFile(ctx, path, db, n); err != nil {
		return 0, cpuSpan{}, err
	}
	rate := float64(n) / time.Since(start).Seconds()
	span, err := cpu.end(groups)
	if err != nil {
		return 0, cpuSpan{}, err
	}
	if got, err := db.count(ctx, tag); err != nil || got != int64(n) {
		return 0, cpuSpan{}, fmt.Errorf("bench: minimal drain: %d of %d rows in the database (%v)", got, n, err)
	}
	return rate, span, nil
}

// fillFile writes n of the minimal drain's transactions, tagged tag, one
// per line into a new file in dir, syncs it and returns its path.
func fillFile(dir, tag string, n int) (string, error) {
	f, err := os.CreateTemp(dir, "minimal-drain-*.log")
	if err != nil {
		return "", fmt.Errorf("bench: minimal drain: %w", err)
	}
	w := bufio.NewWriter(f)
	created := time.Now().UTC()
	for i := range n {
		payload, err := minimalTx(tag, int64(i), created)
		if err != nil {
			f.Close()
			return "", err
		}
		w.Write(payload) // an error sticks, for Flush to return
		w.WriteByte('\n')
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("bench: minimal drain: fill %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// drainFile reads the transactions of the file at path, decodes them and
// writes their rows into db a batch of the applier's size at a time, the
// next batch read while one is written, until n rows are in db.
func drainFile(ctx context.Context, path string, db benchDB, n int) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("bench: minimal drain: %w", err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line, written := 0, 0
	read := func(context.Context) ([]obsRow, bool, error) {
		var rows []obsRow
		for len(rows) < applier.DefaultBatchSize && lines.Scan() {
			line++
			row, err := txRowOf(strconv.Itoa(line), lines.Bytes())
			if err != nil {
				return nil, false, err
			}
			rows = append(rows, row)
		}
		if err := lines.Err(); err != nil {
			return nil, false, fmt.Errorf("bench: minimal drain: read %s: %w", path, err)
		}
		return rows, len(rows) > 0, nil
	}
	err = readAhead(ctx, read, func(rows []obsRow) error {
		written += len(rows)
		return bulk(ctx, db, rows)
	})
	if err != nil {
		return err
	}
	if written != n {
		return fmt.Errorf("bench: minimal drain: %d rows read back of %d", written, n)
	}
	return ctx.Err()
}
