package main

import (
	"context"
	"fmt"
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
		if err := b.readOnce(ctx, lg, url, n, pick, d); err != nil {
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

// readOnce measures both reads with n rows buffered, ids to GET.
func (b *bench) readOnce(ctx context.Context, lg *loadgen, url string, n int, ids []string, d *deployment) error {
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
	var get, list *result
	var getServer, listServer serverSide
	err := b.prof.around(ctx, proc, fmt.Sprintf("read-%d", n), 2*b.cfg.duration, func() {
		getServer.start(ctx, requests(url, getRoute, "200")) //nolint:errcheck // figures left out
		get = closedFn(ctx, 8, b.cfg.duration, func(ctx context.Context) error {
			return lg.get(ctx, url+"/v1/tables/observations/"+ids[int(i.Add(1))%len(ids)])
		})
		getServer.stop(ctx)
		listServer.start(ctx, requests(url, listRoute, "200")) //nolint:errcheck // figures left out
		list = closedFn(ctx, 8, b.cfg.duration, func(ctx context.Context) error {
			return lg.get(ctx, url+readList)
		})
		listServer.stop(ctx)
	})
	if err != nil {
		return err
	}
	if err := get.failed("get by id"); err != nil {
		return err
	}
	if err := list.failed("list"); err != nil {
		return err
	}
	b.out.percentiles("read", fmt.Sprintf("get by id, %d buffered", n), []int{50, 99}, get, "", nil)
	getServer.print(b.out, "read", fmt.Sprintf("get by id, %d buffered", n))
	b.out.percentiles("read", fmt.Sprintf("list of 50, %d buffered", n), []int{50, 99}, list, "", nil)
	listServer.print(b.out, "read", fmt.Sprintf("list of 50, %d buffered", n))
	return nil
}
