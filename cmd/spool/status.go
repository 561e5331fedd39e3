package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	spoolclient "github.com/spoolgw/spool/client"
	"github.com/spoolgw/spool/internal/deadletter"
)

const statusUsage = `Usage:
  spool status [--url URL] [--token T] [--watch] [--json]

Shows a running spool's state: log depth and bytes, writes/s in and
applied/s out (two samples a second apart), time to drain, replica lag,
the applier and its lease, dead letters by table, telemetry lanes. Needs
the admin scope. Exits 1 when /readyz is not 200 (a health check), 2 on
an error. --watch refreshes every 2 s until interrupted.
`

// statusInterval is how often --watch refreshes, and the span of the two
// samples the rates come from.
const (
	statusInterval = 2 * time.Second
	statusSpan     = time.Second
	// statusDeadLetterPages bounds the pages of dead letters counted (by
	// deadletter.MaxPage): a queue past that is shown as "at least".
	statusDeadLetterPages = 10
)

// errNotReady is status's exit 1: spool answers, but is not ready.
var errNotReady = errors.New("not ready")

// snapshot is what spool status shows (and --json prints).
type snapshot struct {
	URL   string    `json:"url"`
	At    time.Time `json:"at"`
	Ready bool      `json:"ready"`
	// NotReady is /readyz's reason when not ready.
	NotReady   string  `json:"not_ready,omitempty"`
	LogDepth   int64   `json:"log_depth"`
	LogBytes   int64   `json:"log_bytes"`
	WritesIn   float64 `json:"writes_per_second"`
	AppliedOut float64 `json:"applied_per_second"`
	// AckToApplyP99 is over the last transactions the process applied;
	// nil in a process that applied none.
	AckToApplyP99 *float64 `json:"ack_to_applied_p99_seconds"`
	// DrainSeconds is the estimated time to drain at the current rates;
	// nil when the log is not draining (or is empty: 0).
	DrainSeconds *float64 `json:"drain_seconds"`
	Applier      string   `json:"applier"`
	// ReplicaLagSeconds and Replicas are nil without read replicas.
	ReplicaLagSeconds *float64         `json:"replica_lag_seconds"`
	Replicas          []replicaSummary `json:"replicas,omitempty"`
	DeadLetters       map[string]int   `json:"dead_letters_by_table"`
	// DeadLettersMore is true when there were more than were counted.
	DeadLettersMore bool               `json:"dead_letters_more,omitempty"`
	Lanes           []spoolclient.Lane `json:"telemetry_lanes"`
}

type replicaSummary struct {
	Name     string `json:"name"`
	Up       bool   `json:"up"`
	LagBytes int64  `json:"lag_bytes"`
}

// statusCommand runs `spool status`.
func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("spool status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, statusUsage); fs.PrintDefaults() }
	base := fs.String("url", "http://127.0.0.1:8080", "`URL` of the running spool")
	token := fs.String("token", "", "`secret` or JWT with the admin scope (default: none; SPOOL_TOKEN)")
	watch := fs.Bool("watch", false, "refresh every 2 s until interrupted")
	asJSON := fs.Bool("json", false, "print JSON (one object per refresh)")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := spoolclient.New(*base, spoolclient.WithToken(*token), spoolclient.WithMaxRetries(0))
	if err != nil {
		return err
	}
	if *watch {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	var prev *spoolclient.Stats
	var prevAt time.Time
	for {
		snap, stats, at, err := sample(ctx, c, *base, prev, prevAt)
		if err != nil {
			if *watch && ctx.Err() != nil {
				return nil
			}
			return err
		}
		prev, prevAt = &stats, at
		if *asJSON {
			b, _ := json.Marshal(snap)
			fmt.Fprintln(stdout, string(b))
		} else {
			if *watch {
				fmt.Fprint(stdout, "\033[H\033[2J") // clear the terminal
			}
			printSnapshot(stdout, snap)
		}
		if !*watch {
			if !snap.Ready {
				return errNotReady
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if !snap.Ready {
				return errNotReady
			}
			return nil
		case <-time.After(statusInterval):
		}
	}
}

// sample reads spool's state. The rates come from prev (taken at prevAt)
// and a new sample, or, without prev, from two samples statusSpan apart.
func sample(ctx context.Context, c *spoolclient.Client, base string, prev *spoolclient.Stats, prevAt time.Time) (snapshot, spoolclient.Stats, time.Time, error) {
	snap := snapshot{URL: base, DeadLetters: map[string]int{}, Lanes: []spoolclient.Lane{}}
	if prev == nil {
		s, err := c.Stats(ctx)
		if err != nil {
			return snap, s, time.Time{}, err
		}
		prev, prevAt = &s, time.Now()
		select {
		case <-ctx.Done():
			return snap, s, time.Time{}, ctx.Err()
		case <-time.After(statusSpan):
		}
	}
	s, err := c.Stats(ctx)
	if err != nil {
		return snap, s, time.Time{}, err
	}
	at := time.Now()
	snap.At = at.UTC()
	if err := c.Ready(ctx); err != nil {
		var ce *spoolclient.Error
		if errors.As(err, &ce) || ctx.Err() != nil {
			return snap, s, at, err
		}
		snap.NotReady = strings.TrimPrefix(err.Error(), "spool is not ready: ")
	} else {
		snap.Ready = true
	}
	dt := at.Sub(prevAt).Seconds()
	snap.LogDepth, snap.LogBytes = s.Log.Depth, s.Log.Bytes
	if s.AckToApplied != nil && s.AckToApplied.Samples > 0 {
		p99 := s.AckToApplied.P99
		snap.AckToApplyP99 = &p99
	}
	snap.WritesIn = float64(s.Accepted-prev.Accepted) / dt
	snap.AppliedOut = float64((s.Applied+s.Failed)-(prev.Applied+prev.Failed)) / dt
	if s.Log.Depth == 0 {
		zero := 0.0
		snap.DrainSeconds = &zero
	} else if net := snap.AppliedOut - snap.WritesIn; net > 0 {
		d := float64(s.Log.Depth) / net
		snap.DrainSeconds = &d
	}
	switch a := s.Applier; {
	case a == nil:
		snap.Applier = "none in this process (--role api)"
	case !a.Running:
		snap.Applier = "stopped"
	case a.Backoff.Attempt > 0:
		snap.Applier = fmt.Sprintf("backing off: attempt %d failed: %s", a.Backoff.Attempt, a.Backoff.LastError)
	case a.HoldsLease:
		snap.Applier = "applying (holds the log's lease)"
	default:
		snap.Applier = "standing by (another process holds the log's lease)"
	}
	if r := s.Replication; r != nil {
		lag := r.LagSeconds
		snap.ReplicaLagSeconds = &lag
		for _, rep := range r.Replicas {
			snap.Replicas = append(snap.Replicas, replicaSummary{Name: rep.Name, Up: rep.Up, LagBytes: rep.LagBytes})
		}
	}
	snap.Lanes = append(snap.Lanes, s.Telemetry...)
	f := spoolclient.DeadLetterFilter{Limit: deadletter.MaxPage}
	for range statusDeadLetterPages {
		page, err := c.DeadLetters(ctx, f)
		if err != nil {
			return snap, s, at, err
		}
		for _, dl := range page.DeadLetters {
			seen := map[string]bool{}
			for _, op := range dl.Transaction.Operations {
				if !seen[op.Table] {
					seen[op.Table] = true
					snap.DeadLetters[op.Table]++
				}
			}
		}
		if f.After = page.After; f.After == "" {
			break
		}
	}
	snap.DeadLettersMore = f.After != ""
	return snap, s, at, nil
}

func printSnapshot(w io.Writer, s snapshot) {
	ready := "ready"
	if !s.Ready {
		ready = "NOT READY: " + s.NotReady
	}
	fmt.Fprintf(w, "spool at %s: %s (%s)\n", s.URL, ready, s.At.Format(time.RFC3339))
	fmt.Fprintf(w, "  log             %d transactions, %s\n", s.LogDepth, bytesText(s.LogBytes))
	fmt.Fprintf(w, "  writes in       %.1f/s\n", s.WritesIn)
	fmt.Fprintf(w, "  applied out     %.1f/s\n", s.AppliedOut)
	if s.AckToApplyP99 != nil {
		fmt.Fprintf(w, "  ack → applied   p99 %s\n", time.Duration(*s.AckToApplyP99*float64(time.Second)).Round(100*time.Microsecond))
	} else {
		fmt.Fprintf(w, "  ack → applied   not measured (this process applied nothing yet)\n")
	}
	switch {
	case s.DrainSeconds == nil:
		fmt.Fprintf(w, "  time to drain   not draining (writes come in as fast as they are applied)\n")
	case *s.DrainSeconds == 0:
		fmt.Fprintf(w, "  time to drain   drained\n")
	default:
		fmt.Fprintf(w, "  time to drain   about %s\n", (time.Duration(*s.DrainSeconds * float64(time.Second))).Round(time.Second))
	}
	fmt.Fprintf(w, "  applier         %s\n", s.Applier)
	if s.ReplicaLagSeconds == nil {
		fmt.Fprintf(w, "  replica lag     no read replicas\n")
	} else {
		fmt.Fprintf(w, "  replica lag     %.3fs\n", *s.ReplicaLagSeconds)
		for _, r := range s.Replicas {
			fmt.Fprintf(w, "    %s: up %v, %s behind\n", r.Name, r.Up, bytesText(r.LagBytes))
		}
	}
	if len(s.DeadLetters) == 0 {
		fmt.Fprintf(w, "  dead letters    none\n")
	} else {
		more := ""
		if s.DeadLettersMore {
			more = " (at least: more were not counted)"
		}
		fmt.Fprintf(w, "  dead letters%s\n", more)
		tables := make([]string, 0, len(s.DeadLetters))
		for t := range s.DeadLetters {
			tables = append(tables, t)
		}
		slices.Sort(tables)
		for _, t := range tables {
			fmt.Fprintf(w, "    %-20s %d\n", t, s.DeadLetters[t])
		}
	}
	if len(s.Lanes) == 0 {
		fmt.Fprintf(w, "  telemetry       no lanes\n")
	}
	for _, l := range s.Lanes {
		fmt.Fprintf(w, "  telemetry %-12s %d/%d in the ring, %d dropped, %d written, writer %s\n",
			l.Table, l.CurrentSize, l.MaxSize, l.RowsDropped, l.Writer.RowsWritten, l.Writer.State)
	}
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
