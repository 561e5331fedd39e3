package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// readBase is how many rows the database holds before any is buffered.
const readBase = 1000

// readList is the filtered list: a tenth of the rows match, the newest
// exposures first, 50 of them.
const readList = "/v1/tables/observations?exposure_s=gte.540&order=exposure_s.desc&limit=50"

// read measures GET by id and a filtered list with 0, 1k and 10k rows
// buffered in the overlay, the drain held.
func (b *bench) read(ctx context.Context) error {
	url := b.cfg.url
	var d *deployment
	if url == "" {
		var err error
		if d, err = b.env.deploy(ctx, "read", true); err != nil {
			return err
		}
		defer d.stop()
		url = d.url()
	}
	noop, stopNoop, err := startNoopReader()
	if err != nil {
		return err
	}
	defer stopNoop()
	lg := newLoadgen(fmt.Sprintf("read%d", time.Now().UnixNano()))
	var mu sync.Mutex
	var ids []string
	lg.onAck = func(a benchAck) { mu.Lock(); ids = append(ids, a.ID); mu.Unlock() }
	var seq atomic.Int64
	target := url + "/v1/tables/observations"
	if err := lg.count(ctx, target, 32, readBase, http.StatusCreated, &seq).failed("fill the database"); err != nil {
		return err
	}
	if d != nil {
		if err := d.drained(ctx, time.Minute); err != nil {
			return err
		}
	}
	inDB := slices.Clone(ids)
	held := false
	levels := slices.Sorted(slices.Values(b.cfg.readLevels))
	for _, n := range levels {
		if n > 0 && !held && d != nil {
			if err := d.hold(ctx); err != nil {
				return err
			}
			held = true
		}
		if more := n - (len(ids) - len(inDB)); more > 0 {
			if err := lg.count(ctx, target, 32, more, http.StatusCreated, &seq).failed(fmt.Sprintf("buffer %d rows", n)); err != nil {
				return err
			}
		}
		pick := inDB
		if n > 0 {
			pick = ids[len(inDB):]
		}
		if err := b.readOnce(ctx, lg, url, noop, n, pick, d); err != nil {
			return err
		}
	}
	if d == nil {
		return nil
	}
	if err := d.release(ctx); err != nil {
		return err
	}
	return d.verify(ctx, lg.tag, int(seq.Load()))
}

// readOnce measures both reads with n rows buffered, ids to GET, and the
// no-op reader at noop at the same rates.
func (b *bench) readOnce(ctx context.Context, lg *loadgen, url, noop string, n int, ids []string, d *deployment) error {
	if d != nil && n > 0 {
		st, err := d.stats(ctx)
		if err != nil {
			return err
		}
		if st.Log.Depth < int64(n) {
			return fmt.Errorf("%d rows should be buffered, the log holds %d: the drain was not held", n, st.Log.Depth)
		}
	}
	var proc *spoolProc
	if d != nil {
		proc = d.api
	}
	var i atomic.Int64
	var get, list *readLoad
	ceiling := func(ctx context.Context) error { return lg.get(ctx, noop) }
	err := b.prof.around(ctx, proc, fmt.Sprintf("read-%d", n), 6*b.cfg.duration, func() {
		get = b.measureRead(ctx, url, getRoute, func(ctx context.Context) error {
			return lg.get(ctx, url+"/v1/tables/observations/"+ids[int(i.Add(1))%len(ids)])
		}, ceiling)
		list = b.measureRead(ctx, url, listRoute, func(ctx context.Context) error {
			return lg.get(ctx, url+readList)
		}, ceiling)
	})
	if err != nil {
		return err
	}
	if d != nil && b.env.servers() && get.closed.n > 0 {
		// The minimal reader makes the round trips spool's GET makes:
		// to Redis, and for a row in the database to the replica too.
		m, err := b.env.startMinimalReader(ctx, d.be.name, d.be.replica)
		if err != nil {
			return err
		}
		read := func(ctx context.Context) error { return lg.get(ctx, m.url+"/"+ids[int(i.Add(1))%len(ids)]) }
		// Warm as spool is by its closed loop: connections open, and
		// the replica's backends have the table cached.
		closedFn(ctx, readers, min(time.Second, b.cfg.duration), read)
		m.reset()
		get.minimal = openFn(ctx, get.rate, b.cfg.duration, read)
		get.minimalSrv = m.served()
		m.stop()
		if err := get.minimal.failed("the minimal reader"); err != nil {
			return err
		}
	}
	if err := get.failed("get by id"); err != nil {
		return err
	}
	if err := list.failed("list"); err != nil {
		return err
	}
	get.print(b.out, fmt.Sprintf("get by id, %d buffered", n))
	list.print(b.out, fmt.Sprintf("list of 50, %d buffered", n))
	return nil
}

// readLoad is one read measured: a closed loop of readers (the most it
// serves, and its latency with the machine saturated), then an open loop
// at half that rate (its latency at half load, as ingest's), each beside
// the server's own histogram, and the no-op reader at the same rate (the
// ceiling: the same HTTP stack answering a row-sized body, nothing
// behind it).
type readLoad struct {
	closed, open, ceiling *result
	rate                  float64 // of the open loops
	closedSrv, openSrv    serverSide
	// minimal is the minimal reader at the open loop's rate, when it ran
	// (GET by id on the servers shape; see startMinimalReader), and
	// minimalSrv its own times.
	minimal, minimalSrv *result
}

// readers is the closed loop's concurrency.
const readers = 8

// measureRead measures one read, fn, served at route, and the ceiling
// at the open loop's rate.
func (b *bench) measureRead(ctx context.Context, url, route string, fn, ceiling func(context.Context) error) *readLoad {
	r := &readLoad{}
	r.closedSrv.start(ctx, requests(url, route, "200")) //nolint:errcheck // figures left out
	r.closed = closedFn(ctx, readers, b.cfg.duration, fn)
	r.closedSrv.stop(ctx)
	if r.closed.n == 0 {
		return r
	}
	r.rate = r.closed.perSecond() / 2
	r.openSrv.start(ctx, requests(url, route, "200")) //nolint:errcheck // figures left out
	r.open = openFn(ctx, r.rate, b.cfg.duration, fn)
	r.openSrv.stop(ctx)
	r.ceiling = openFn(ctx, r.rate, b.cfg.duration, ceiling)
	return r
}

func (r *readLoad) failed(what string) error {
	if err := r.closed.failed(what); err != nil {
		return err
	}
	if err := r.open.failed(what + " at half load"); err != nil {
		return err
	}
	return r.ceiling.failed("the no-op reader")
}

func (r *readLoad) print(out *reporter, what string) {
	out.print(figure{Scenario: "read", Figure: fmt.Sprintf("%s reads/s, %d readers", what, readers), Value: r.closed.perSecond(), Unit: "1/s"})
	out.percentiles("read", what, []int{50, 99}, r.closed, "", nil)
	r.closedSrv.print(out, "read", what)
	half := fmt.Sprintf("%s at 0.5×max (%.0f/s)", what, r.rate)
	out.percentiles("read", half, []int{50, 99}, r.open, "no-op", r.ceiling)
	r.openSrv.print(out, "read", half)
	if r.minimal != nil {
		out.percentiles("read", half+", vs minimal reader", []int{50, 99}, r.open, "minimal reader", r.minimal)
		out.percentiles("read", half+", minimal reader, server-side", []int{50, 99}, r.minimalSrv, "", nil)
	}
}

// startNoopReader serves the reads' ceiling: the same HTTP stack answering
// every request 200 with a body the size of a row, nothing behind it.
func startNoopReader() (string, func(), error) {
	return serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"0190b5a0-0000-7000-8000-000000000000","target":"read-000000","telescope":"main","exposure_s":540,"status":"planned","started_at":null,"finished_at":null,"meta":{"n":0}}`)
	}))
}
