package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/spoolgw/spool/internal/txlog/filelog"
)

// logCommand runs `spool log check`: a read-only scan of the local log.
func logCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: spool log check [--data-dir DIR]")
		return fmt.Errorf("spool log: want the subcommand check")
	}
	fs := flag.NewFlagSet("spool log check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./spool-data", "`directory` whose log to check")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: spool log check [--data-dir DIR]

Scans the local log read-only and reports its segments, records and
acknowledged position, a torn tail (which the next start cuts off) and any
corruption (which stops the start, naming segment and offset). Exits 1 when
the log is corrupt.

`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	dir := localLogDir(*dataDir)
	rep, err := filelog.Check(dir)
	if rep.Segments != nil || err == nil {
		fmt.Fprintf(stdout, "log %s: %d segments, %d records (seq %d–%d), acknowledged up to %d\n",
			dir, len(rep.Segments), rep.Records, rep.FirstSeq, rep.LastSeq, rep.Acked)
		for _, s := range rep.Segments {
			state := ""
			if s.Reclaimable {
				state = " (acknowledged; removed at next start)"
			}
			fmt.Fprintf(stdout, "  %s  %d bytes  %d records  seq %d–%d%s\n", s.Name, s.Size, s.Records, s.FirstSeq, s.LastSeq, state)
		}
	}
	if rep.TornTail != nil {
		fmt.Fprintf(stdout, "torn tail: %v (the next start truncates it; nothing acknowledged is lost)\n", rep.TornTail)
	}
	if rep.Corruption != nil {
		fmt.Fprintf(stdout, "CORRUPT: %v\n", rep.Corruption)
		return fmt.Errorf("log is corrupt at segment %s offset %d", rep.Corruption.Segment, rep.Corruption.Offset)
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
