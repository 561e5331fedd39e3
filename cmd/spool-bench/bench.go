package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

const benchUsage = `Usage: spool-bench [scenario…] [flags]

Drives spool with a built-in load generator and prints each figure beside
its ceiling or baseline measured in the same run, with the ratio. Without
--url each scenario starts its own spool (the spool binary --spool names,
run as spool serve) on a fresh
log and database: the embedded default (local log + SQLite in a temporary
directory), or with --servers a throwaway redis-server (AOF always) and
PostgreSQL primary with a streaming replica (spool --log redis://…
--database postgres://… --replica postgres://…).

Scenarios (default: ingest read):
  ingest      acknowledged writes/s and latency p50/p90/p99/p999 at each
              --concurrency (closed loop), beside a no-op handler on the same
              HTTP stack (the ceiling) and the synchronous baseline ("before
              spool": a handler in the bench that inserts each request's row
              with one statement into a database of the same kind — a
              separate SQLite file with spool's pragmas, or the same
              PostgreSQL server), and the durable no-op (the no-op answering
              once the body is durable the way spool's log makes it: appended
              to a file under group-committed fsync, or with --servers one
              RPUSH to the same Redis; no validation, overlay or drain: the
              most a durable acknowledgement reaches here), and the minimal
              pipeline (the durable no-op that drains too: each body a
              transaction of spool's log's shape, made durable, and drained
              500 rows at a time by a multi-row INSERT into SQLite, or with
              --servers XADDed to the same Redis and drained by the minimal
              drain; the most a gateway that drains as fast as it takes
              writes reaches here); then an open
              loop (fixed arrival rate, latency from each request's scheduled
              time) at half the highest rate measured, or at --rate, beside
              the no-op, the durable no-op and the minimal pipeline at
              that rate, with the
              server's own p50/p99 from its request histogram and, on the
              local log, those of its fdatasyncs meanwhile (GET /metrics; to
              the bound of the bucket they fall in)
  replicated  (--servers) the write path's cost of --log-min-replicas 1 (a
              WAIT for one replica after each append): a replica is
              attached to the bench's Redis, and at each --concurrency
              spool with WAIT 1 and spool without (the single-server
              shape, same master, same replica attached) are measured
              alternately, beside the durable no-op with and without the
              same WAIT after its RPUSH (the floor of each)
  drain       pre-fills the log with the drain held, then rows/s into the
              database once it drains. Beside it: the same number of rows
              written raw in batches of 500 (COPY on PostgreSQL, one
              multi-row INSERT on SQLite), each batch its own transaction,
              and (PostgreSQL) one COPY of them all. Also the p50/p99 of
              each stage of the applier's batches meanwhile (claim_wait,
              apply, finish_wait, report, ack; GET /metrics, to the bound
              of the bucket), and (Linux) the CPU time per row that spool,
              Redis and PostgreSQL used while the log drained (from /proc,
              each with its children; with --servers from the applier's
              start, over every row) against the raw batches', with the
              cores each kept busy: on busy cores, CPU per row bounds the
              rate. Then the minimal drain, the floor under any drain of
              this log into this database: the same number of
              transactions of the shape spool's log holds, decoded as the
              applier decodes them, 500 at a time, the next batch read
              during the write; embedded, read back from a file of them
              (one per line) and written with one multi-row INSERT;
              --servers, claimed from a stream of the same Redis, copied
              (COPY) and acknowledged. No overlay, exactly-once record,
              fencing or status. With --servers, for spool and the
              minimal drain, Redis's time per row in its costliest
              commands (INFO commandstats)
  visibility  at half the highest ingest rate, time from each acknowledgement
              to applied and (--servers) to replicated, beside the raw
              replica lag measured in the same run (commit on the primary
              until the replica's replay position passes it). The first
              second of writes is a warm-up: a spool just started applies
              its first batches slowly, and the time to applied of the
              writes behind them is reported apart. Measured after it: the
              p50/p99 of each stage of the applier's batches, as in drain,
              and (Linux) the CPU time per write of each process, the
              bench's load generator included, with the cores they kept
              busy: how much room the machine had left at that rate. With
              --servers, the time to applied also beside the minimal
              pipeline at the same rate, warm-up and measurement: the
              least a Redis log drained into PostgreSQL does between the
              acknowledgement and the row committed (each write XADDed to a
              stream of the same Redis before the 201, drained as the
              minimal drain drains; no validation, overlay or status)
  read        GET by id and a filtered, ordered list of 50, with 0, 1k and
              10k rows buffered in the overlay (drain held): reads/s and
              p50/p99 of 8 readers in a closed loop, then p50/p99 in an open
              loop at half that rate beside a no-op reader at the same rate
              (the same HTTP stack answering a row-sized body), each with
              the server's own p50/p99 (GET /metrics, to the bucket bound).
              With --servers, the GET also beside the minimal reader at the
              same rate, at the client and server-side: the least such a
              GET does here, one LRANGE of spool's own list of the row's
              pending changes in the same Redis, answered from it if it
              has any, else the row as JSON from the replica; in the
              bench's process, warmed first as spool is by its closed loop
  events      live events (GET /v1/events over SSE): at half the highest
              ingest rate, the time from each write's acknowledgement to its
              row message at a subscriber, p50/p99, beside the floor of the
              same hand-off without spool (with --servers a bare XADD to a
              Redis stream of the Redis spool uses, read by a blocking XREAD;
              else a server of the bench's that answers each POSTed write
              201 and then sends it as an SSE event to one subscriber, the
              acknowledgement → event measured as spool's) measured at the same
              time, under the same load, at up to 500/s; then the floor
              alone at spool's rate; then 1,000 subscribers of one
              process (a filter each) and 100 writes/s: deliveries/s against
              those offered, and CPU per delivery of the deployment and of
              the subscribers (the bench)
  outage      writes at --outage-rate while the database is down for
              --outage (PostgreSQL stopped; embedded: SQLite's write lock
              held by another connection); spool's live heap (after a
              collection), RSS and log size sampled every --sample; heap at
              a tenth of the outage against the end; then every write must
              reach the database
  telemetry   NDJSON batches at --telemetry-rate rows/s into the telemetry
              lane (serve --telemetry-table readings): rows/s accepted,
              dropped and written; then the highest rate it sustains
              (nothing dropped, 95% accepted), from that rate up,
              against the same rows written raw in batches of 500 (COPY;
              embedded: a multi-row INSERT)

Holding the drain: with --servers an api process takes the writes and a
separate applier process drains the Redis log (stopped to hold it); on the
embedded default the bench holds SQLite's write lock, so spool's applier
waits and backs off while intake and reads go on.

Every scenario fails on errors or impossible results (nothing acknowledged,
acknowledged writes missing from the database), never on timing.

Flags:
`

// benchConfig is everything spool-bench is told.
type benchConfig struct {
	spool         string // the spool binary to start
	url           string
	servers       bool
	dbLatency     time.Duration
	duration      time.Duration
	levels        []int
	rate          float64
	asJSON        bool
	pprofDir      string
	outage        time.Duration
	outageRate    float64
	sample        time.Duration
	telemetryRate float64
	telemetryRing int
	readLevels    []int
	drainHeld     bool
}

// benchScenarios are the scenarios in the order they run.
var benchScenarios = []string{"ingest", "replicated", "drain", "visibility", "read", "events", "outage", "telemetry"}

func benchFlags(stderr io.Writer) (*flag.FlagSet, *benchConfig, *string, *string) {
	c := &benchConfig{}
	fs := flag.NewFlagSet("spool-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage); fs.PrintDefaults() }
	fs.StringVar(&c.spool, "spool", "", "the spool `BINARY` to start (default: spool beside this program, else on PATH)")
	fs.StringVar(&c.url, "url", "", "`URL` of a running spool to drive (ingest and read only; default: start one per scenario)")
	fs.BoolVar(&c.servers, "servers", false, "start throwaway redis-server and PostgreSQL (primary + streaming replica) and run spool on them")
	fs.DurationVar(&c.dbLatency, "db-latency", 0, "with --servers: one-way latency a proxy in the bench adds between PostgreSQL and both spool and the baselines, a database a round trip of twice that away (0: none)")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "how long each measurement runs")
	levels := fs.String("concurrency", "1,16,64,256", "comma-separated writer counts of the closed loop")
	fs.Float64Var(&c.rate, "rate", 0, "ingest open loop and visibility: writes per second (0: half the highest closed-loop rate)")
	fs.BoolVar(&c.asJSON, "json", false, "print one JSON object per line and figure")
	fs.StringVar(&c.pprofDir, "pprof", "", "write the server's CPU and heap profiles of each measurement into `DIR`")
	fs.DurationVar(&c.outage, "outage", 30*time.Second, "how long the outage scenario keeps the database down (10m for the full version)")
	fs.Float64Var(&c.outageRate, "outage-rate", 500, "writes per second during the outage")
	fs.DurationVar(&c.sample, "sample", 0, "how often the outage samples heap and log size (default: a twentieth of --outage, at least 1s)")
	fs.Float64Var(&c.telemetryRate, "telemetry-rate", 50000, "telemetry rows per second offered, in NDJSON batches of 500")
	fs.IntVar(&c.telemetryRing, "telemetry-ring", 0, "the telemetry lane's ring, in samples (0: spool's default)")
	fs.BoolVar(&c.drainHeld, "drain-held", false, "ingest: hold spool's drain while writes are measured (its write path alone, beside floors that drain); released at the end, when every write is checked")
	reads := fs.String("read-buffered", "0,1000,10000", "comma-separated rows buffered in the overlay for the read scenario")
	return fs, c, levels, reads
}

func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c, levels, reads := benchFlags(stderr)
	scenarios, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(scenarios) == 0 {
		scenarios = []string{"ingest", "read"}
	}
	for _, sc := range scenarios {
		if !slices.Contains(benchScenarios, sc) {
			return fmt.Errorf("unknown scenario %q (want %s)", sc, strings.Join(benchScenarios, ", "))
		}
		if c.url != "" && sc != "ingest" && sc != "read" {
			return fmt.Errorf("scenario %s starts its own spool: it cannot run with --url", sc)
		}
	}
	if c.levels, err = positiveInts("--concurrency", *levels, false); err != nil {
		return err
	}
	if c.readLevels, err = positiveInts("--read-buffered", *reads, true); err != nil {
		return err
	}
	if c.url != "" && (c.servers || c.pprofDir != "" || c.drainHeld) {
		return fmt.Errorf("--url drives a running spool: --servers, --pprof and --drain-held need spool-bench to start it")
	}
	if c.dbLatency < 0 || (c.dbLatency > 0 && !c.servers) {
		return fmt.Errorf("--db-latency %s: a positive latency, with --servers (SQLite is embedded: nothing lies between it and spool)", c.dbLatency)
	}
	if c.sample == 0 {
		c.sample = max(time.Second, c.outage/20)
	}
	b, err := newBench(ctx, c, stdout, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	for _, sc := range benchScenarios {
		if slices.Contains(scenarios, sc) {
			if err := b.run(ctx, sc); err != nil {
				return fmt.Errorf("%s: %w", sc, err)
			}
		}
	}
	return nil
}

// parseInterleaved parses flags and positional words in any order.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return words, nil
		}
		words = append(words, fs.Arg(0))
		rest = fs.Args()[1:]
	}
}

func positiveInts(name, list string, zero bool) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 || (n == 0 && !zero) {
			return nil, fmt.Errorf("%s: %q is not a positive integer", name, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// bench is one run: its configuration, environment and output.
type bench struct {
	cfg     *benchConfig
	env     *benchEnv // nil with --url
	out     *reporter
	prof    *profiler
	stderr  io.Writer
	maxRate float64 // the highest closed-loop ingest rate, once measured
}

func newBench(ctx context.Context, c *benchConfig, stdout, stderr io.Writer) (*bench, error) {
	b := &bench{cfg: c, out: &reporter{w: stdout, json: c.asJSON}, prof: &profiler{dir: c.pprofDir}, stderr: stderr}
	if c.url != "" {
		return b, nil
	}
	env, err := newBenchEnv(ctx, c.spool, c.servers, c.dbLatency, stderr)
	if err != nil {
		return nil, err
	}
	b.env = env
	if !c.asJSON {
		held := ""
		if c.drainHeld {
			held = ", spool's drain held in ingest"
		}
		fmt.Fprintf(stdout, "# spool-bench on %s, %s per measurement%s, %s\n", env.describe(), c.duration, held, time.Now().UTC().Format(time.DateOnly))
	}
	return b, nil
}

func (b *bench) close() {
	if b.env != nil {
		b.env.Close()
	}
}

func (b *bench) run(ctx context.Context, scenario string) error {
	switch scenario {
	case "ingest":
		return b.ingest(ctx)
	case "replicated":
		return b.replicated(ctx)
	case "drain":
		return b.drain(ctx)
	case "visibility":
		return b.visibility(ctx)
	case "read":
		return b.read(ctx)
	case "events":
		return b.events(ctx)
	case "outage":
		return b.outageScenario(ctx)
	case "telemetry":
		return b.telemetry(ctx)
	}
	return fmt.Errorf("unknown scenario %q", scenario)
}

// figure is one line of the bench's output.
type figure struct {
	Scenario      string  `json:"scenario"`
	Figure        string  `json:"figure"`
	Value         float64 `json:"value"`
	Unit          string  `json:"unit"`
	Baseline      string  `json:"baseline"`
	BaselineValue float64 `json:"baseline_value,omitempty"`
	Ratio         float64 `json:"ratio,omitempty"`
}

// reporter prints figures as a table or as JSON lines.
type reporter struct {
	w    io.Writer
	json bool
}

func (r *reporter) print(f figure) {
	if f.BaselineValue > 0 {
		f.Ratio = f.Value / f.BaselineValue
	}
	if r.json {
		b, _ := json.Marshal(f)
		fmt.Fprintln(r.w, string(b))
		return
	}
	line := fmt.Sprintf("%-10s %-44s %12.2f %-6s", f.Scenario, f.Figure, f.Value, f.Unit)
	if f.Baseline != "" {
		line += fmt.Sprintf("  %-26s %12.2f  ratio %.2f", f.Baseline, f.BaselineValue, f.Ratio)
	}
	fmt.Fprintln(r.w, line)
}

// percentiles prints p50/p99 (and more) of got beside base, if any.
func (r *reporter) percentiles(scenario, what string, qs []int, got *result, baseline string, base *result) {
	for _, q := range qs {
		f := figure{Scenario: scenario, Figure: fmt.Sprintf("%s p%d", what, q), Value: got.pct(q), Unit: "ms"}
		if base != nil {
			f.Baseline, f.BaselineValue = baseline, base.pct(q)
		}
		r.print(f)
	}
}
