package main

// Helpers of the fault tests (crash loops, outages, network faults, Redis
// restarts, a full disk): a load that records every answer, and the checks
// that count what was acknowledged, lost, duplicated and dead-lettered.
//
// None of these tests calls t.Parallel: some stop the PostgreSQL primary or
// the Redis server the package shares, and the package's parallel tests
// only start once every sequential test has finished, so nothing else uses
// the servers meanwhile.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the "sqlite" driver of database/sql

	"github.com/spoolgw/spool/internal/poll"
)

// answer is one request of a load: when it was sent, how long its answer
// took, and its status (0: no answer, a transport error).
type answer struct {
	at     time.Time
	took   time.Duration
	status int
	err    string
}

// rowLoad drives writers that each insert an observation and then update
// it, once after the other, `updates` times with exposure_s 1, 2, 3…, each
// request waiting for the answer to the one before. It records every
// answer, the last acknowledged exposure of every row (the order check:
// the database must end with it) and every acknowledged transaction.
//
// A refused or unanswered update is sent again with the same value until
// it is acknowledged, so the last acknowledged value stays the row's last
// write; one still unanswered when the load stops may or may not have been
// logged, and the row may end with either value (maybe).
type rowLoad struct {
	tag     string        // target of every row: this load's rows
	updates int           // updates after each insert
	pace    time.Duration // pause after every request of a writer
	http    *http.Client

	mu      sync.Mutex
	final   map[string]int64 // row id → last acknowledged exposure_s
	maybe   map[string]int64 // row id → a later value sent without an answer
	txns    []string         // acknowledged transaction ids
	acks    []ack            // acknowledged inserts
	refused map[string]int   // target of an insert not acknowledged → status
	answers []answer
	wg      sync.WaitGroup
}

func newRowLoad(tag string, updates int, pace time.Duration) *rowLoad {
	return &rowLoad{tag: tag, updates: updates, pace: pace, http: &http.Client{Timeout: 10 * time.Second},
		final: map[string]int64{}, maybe: map[string]int64{}, refused: map[string]int{}}
}

// start runs writers against url until stop closes; wait waits for them.
func (l *rowLoad) start(url string, writers int, stop <-chan struct{}) {
	round := time.Now().UnixNano()
	for w := range writers {
		l.wg.Go(func() { l.run(url, fmt.Sprintf("%d-%d", round, w), stop) })
	}
}

func (l *rowLoad) wait() { l.wg.Wait() }

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

func (l *rowLoad) run(url, name string, stop <-chan struct{}) {
	for n := 0; !stopped(stop); n++ {
		target := fmt.Sprintf("%s-%s-%d", l.tag, name, n)
		status, body := l.do(http.MethodPost, url+"/v1/tables/observations", fmt.Sprintf(`{"target":%q,"exposure_s":0}`, target))
		var rc struct {
			ID            string `json:"id"`
			TransactionID string `json:"transaction_id"`
		}
		if status != http.StatusCreated || json.Unmarshal(body, &rc) != nil {
			l.mu.Lock()
			l.refused[target] = status
			l.mu.Unlock()
			l.pause(stop, status)
			continue
		}
		l.mu.Lock()
		l.final[rc.ID] = 0
		l.txns = append(l.txns, rc.TransactionID)
		l.acks = append(l.acks, ack{rc.ID, rc.TransactionID})
		l.mu.Unlock()
		l.pause(stop, status)
		for v := int64(1); v <= int64(l.updates) && !stopped(stop); {
			status, body := l.do(http.MethodPatch, url+"/v1/tables/observations/"+rc.ID, fmt.Sprintf(`{"exposure_s":%d}`, v))
			var u struct {
				TransactionID string `json:"transaction_id"`
			}
			l.mu.Lock()
			if status == http.StatusAccepted && json.Unmarshal(body, &u) == nil {
				l.final[rc.ID] = v
				delete(l.maybe, rc.ID)
				l.txns = append(l.txns, u.TransactionID)
				v++
			} else {
				l.maybe[rc.ID] = v
			}
			l.mu.Unlock()
			l.pause(stop, status)
		}
	}
}

// pause waits the pace after a request, and at least 50 ms after one that
// failed, so that a refusing spool is not hammered.
func (l *rowLoad) pause(stop <-chan struct{}, status int) {
	d := l.pace
	if status/100 != 2 {
		d = max(d, 50*time.Millisecond)
	}
	if d <= 0 {
		return
	}
	select {
	case <-stop:
	case <-time.After(d):
	}
}

func (l *rowLoad) do(method, url, body string) (int, []byte) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sent := time.Now()
	res, err := l.http.Do(req)
	a := answer{at: sent}
	var b []byte
	if err == nil {
		b, err = io.ReadAll(res.Body)
		res.Body.Close()
		a.status = res.StatusCode
	}
	a.took = time.Since(sent)
	if err != nil {
		a.status, a.err = 0, err.Error()
	}
	l.mu.Lock()
	l.answers = append(l.answers, a)
	l.mu.Unlock()
	return a.status, b
}

// tally counts the answers sent in [from, to) (zero times: no bound) by
// status, and the slowest.
type tally struct {
	total, ok int
	byStatus  map[int]int // non-2xx answers by status; 0 is no answer
	slowest   time.Duration
	errs      []string // a few transport errors
}

func (l *rowLoad) tally(from, to time.Time) tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := tally{byStatus: map[int]int{}}
	for _, a := range l.answers {
		if (!from.IsZero() && a.at.Before(from)) || (!to.IsZero() && !a.at.Before(to)) {
			continue
		}
		t.total++
		t.slowest = max(t.slowest, a.took)
		if a.status/100 == 2 {
			t.ok++
			continue
		}
		t.byStatus[a.status]++
		if a.err != "" && len(t.errs) < 3 {
			t.errs = append(t.errs, a.err)
		}
	}
	return t
}

func (t tally) failed() int { return t.total - t.ok }

func (t tally) String() string {
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(t.byStatus)) {
		name := fmt.Sprint(s)
		if s == 0 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, t.byStatus[s]))
	}
	return fmt.Sprintf("%d requests, %d 2xx, non-2xx {%s}, slowest %v", t.total, t.ok, strings.Join(parts, ", "), t.slowest.Round(time.Millisecond))
}

// acked returns how many inserts and transactions were acknowledged.
func (l *rowLoad) acked() (rows, txns int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.final), len(l.txns)
}

// figures are what a fault test reports.
type figures struct {
	rows, txns   int // acknowledged inserts, acknowledged transactions
	lost         int // acknowledged transactions not applied
	wrong        int // rows whose final value is not their last acknowledged one
	duplicated   int // transactions or rows applied more than once
	deadLettered int
	unacked      int // rows applied whose insert was not acknowledged (in flight at a crash, or refused)
	refused      int // inserts refused or unanswered
}

func (f figures) String() string {
	return fmt.Sprintf("%d rows and %d transactions acknowledged; lost %d, out of order %d, duplicated %d, dead-lettered %d; %d rows applied without an acknowledgement (in flight or refused)",
		f.rows, f.txns, f.lost, f.wrong, f.duplicated, f.deadLettered, f.unacked)
}

// checkRows checks in PostgreSQL database db that every transaction l had
// acknowledged is applied once, that every row holds its last acknowledged
// value, and that nothing was dead-lettered; it logs and returns the
// figures.
func (l *rowLoad) checkRows(t *testing.T, db string) figures {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	f := figures{rows: len(l.final), txns: len(l.txns)}
	q := func(sql string, args ...any) int {
		var n int
		if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	f.deadLettered = q("select count(*) from spool_dead_letters")
	applied := q("select count(*) from spool_applied where txn_id = any($1::uuid[])", l.txns)
	distinct := len(slices.Compact(slices.Sorted(slices.Values(l.txns))))
	f.lost = distinct - applied
	// Both are primary keys, so these count what the keys would refuse:
	// a second application of a transaction, a second row of one insert.
	f.duplicated = q("select count(*) from (select txn_id from spool_applied group by txn_id having count(*) > 1) d") +
		q("select count(*) from (select target from observations where target like $1 group by target having count(*) > 1) d", l.tag+"-%") +
		(len(l.txns) - distinct)
	got := exposures(t, conn, "target like $1", l.tag+"-%")
	for id, v := range l.final {
		g, ok := got[id]
		if !ok {
			continue // counted in lost (its insert is not in spool_applied)
		}
		if m, has := l.maybe[id]; g != float64(v) && (!has || g != float64(m)) {
			f.wrong++
			if f.wrong <= 5 {
				t.Errorf("row %s: exposure_s %v, want the last acknowledged %d", id, g, v)
			}
		}
	}
	for id := range got {
		if _, ok := l.final[id]; !ok {
			f.unacked++
		}
	}
	t.Logf("figures: %v", f)
	if f.lost != 0 || f.wrong != 0 || f.duplicated != 0 || f.deadLettered != 0 {
		t.Errorf("lost %d, out of order %d, duplicated %d, dead-lettered %d: want 0 each", f.lost, f.wrong, f.duplicated, f.deadLettered)
	}
	if f.rows == 0 {
		t.Error("no write was acknowledged: the load did not run")
	}
	return f
}

// rows returns the ids of the rows acknowledged so far.
func (l *rowLoad) rows() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make(map[string]bool, len(l.final))
	for id := range l.final {
		ids[id] = true
	}
	return ids
}

// checkReads reads back up to n acknowledged rows (but those in skip)
// through url and counts those that do not show the writer's last
// acknowledged value (or a later one of its): a writer must always see its
// own writes, buffered or not.
func (l *rowLoad) checkReads(c *http.Client, url string, n int, skip map[string]bool) (reads, stale int, sample string) {
	l.mu.Lock()
	want := make(map[string]int64, n)
	for id, v := range l.final {
		if len(want) == n {
			break
		}
		if !skip[id] {
			want[id] = v
		}
	}
	l.mu.Unlock()
	for id, v := range want {
		status, row, err := getJSON(c, url+"/v1/tables/observations/"+id)
		if err != nil {
			continue
		}
		reads++
		got, _ := row["exposure_s"].(float64)
		if status != http.StatusOK || got < float64(v) || got > float64(l.updates) {
			stale++
			sample = fmt.Sprintf("row %s: %d %v, want exposure_s %d or later", id, status, row, v)
		}
	}
	return reads, stale, sample
}

// getJSON fetches url and decodes its JSON body into a map.
func getJSON(c *http.Client, url string) (int, map[string]any, error) {
	return doJSON(c, http.MethodGet, url, "")
}

// doJSON sends a request with a JSON body (none if "") and decodes the
// JSON it answers into a map.
func doJSON(c *http.Client, method, url, body string) (int, map[string]any, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		return res.StatusCode, nil, err
	}
	return res.StatusCode, m, nil
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, timeout, what, cond)
}

// exposures reads exposure_s of the observations matching where, by id.
func exposures(t *testing.T, conn *pgx.Conn, where string, args ...any) map[string]float64 {
	t.Helper()
	rows, err := conn.Query(t.Context(), "select id::text, exposure_s from observations where "+where, args...)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for rows.Next() {
		var id string
		var v float64
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		got[id] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// logLines returns the first n lines of p's log that hold text.
func logLines(p *proc, text string, n int) string {
	var out []string
	for line := range strings.Lines(p.stderr.String()) {
		if strings.Contains(line, text) {
			out = append(out, line)
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "")
}

// checkSQLite checks, in the SQLite database at path, what checkRows checks
// in PostgreSQL, for a load of inserts only (no updates); it reads each
// table once, so that it stays quick for tens of thousands of writes.
func (l *rowLoad) checkSQLite(t *testing.T, path string) figures {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	set := func(query string, args ...any) map[string]int {
		rows, err := db.Query(query, args...)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		defer rows.Close()
		m := map[string]int{}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			m[strings.ToLower(s)]++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	applied := set("select txn_id from spool_applied")
	ids := set("select id from observations where target like ?", l.tag+"-%")
	targets := set("select target from observations where target like ?", l.tag+"-%")
	f := figures{rows: len(l.acks), txns: len(l.txns), refused: len(l.refused), deadLettered: len(set("select txn_id from spool_dead_letters"))}
	for _, a := range l.acks {
		if ids[strings.ToLower(a.id)] == 0 || applied[strings.ToLower(a.tx)] == 0 {
			f.lost++
		}
	}
	for _, m := range []map[string]int{applied, ids, targets} {
		for _, n := range m {
			f.duplicated += n - 1
		}
	}
	for target := range l.refused {
		f.unacked += targets[target]
	}
	t.Logf("figures: %v", f)
	if f.lost != 0 || f.duplicated != 0 || f.deadLettered != 0 {
		t.Errorf("lost %d, duplicated %d, dead-lettered %d: want 0 each", f.lost, f.duplicated, f.deadLettered)
	}
	if f.rows == 0 {
		t.Error("no write was acknowledged: the load did not run")
	}
	return f
}
