package main

// The workload of the fault campaigns (campaign_test.go): writers that
// each own their rows and record every request, read and status read in
// a history.History, which checks it against what the database applied.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/spoolgw/spool/internal/history"
)

// campaignTable is the table the campaign writes; campaignAudit is filled
// by triggers with every change applied to it, in the order applied.
const (
	campaignTable = "campaign_rows"
	campaignAudit = "campaign_audit"
)

// campaignLoad drives writers against a deployment's api processes until
// stop closes. Every writer owns the rows it inserts: it alone updates,
// deletes and reads them, each write setting the row's counter to a value
// above every earlier one, so that the audit of what was applied tells
// each write apart. A write whose outcome is unknown (a 5xx, no answer)
// ends its rows' lives: the writer never writes them again.
type campaignLoad struct {
	hist *history.History
	urls []string
	http *http.Client
	wg   sync.WaitGroup

	invalid atomic.Int64 // valid writes refused with a 4xx
	sample  atomic.Value // one such refusal, as text
}

func newCampaignLoad(urls []string) *campaignLoad {
	return &campaignLoad{hist: history.New(), urls: urls, http: &http.Client{Timeout: 10 * time.Second}}
}

// start runs writers, each with its own random source drawn from seed.
func (l *campaignLoad) start(writers int, seed uint64, stop <-chan struct{}) {
	for i := range writers {
		w := &campaignWriter{l: l, hc: l.hist.Client(fmt.Sprintf("w%d", i)), rng: rand.New(rand.NewPCG(seed, uint64(i)))}
		l.wg.Go(func() { w.run(stop) })
	}
}

func (l *campaignLoad) wait() { l.wg.Wait() }

type ownedRow struct {
	id      string
	counter int64
}

type campaignWriter struct {
	l       *campaignLoad
	hc      *history.Client
	rng     *rand.Rand
	counter int64       // the last counter value written, to any row
	live    []*ownedRow // rows inserted (acknowledged), not deleted or abandoned
	gone    []string    // rows deleted (acknowledged), still read now and then
	acked   []string    // acknowledged transaction ids
}

func (w *campaignWriter) next() int64 { w.counter++; return w.counter }

func (w *campaignWriter) url() string { return w.l.urls[w.rng.IntN(len(w.l.urls))] }

func (w *campaignWriter) run(stop <-chan struct{}) {
	for !stopped(stop) {
		ok := true
		switch n := w.rng.IntN(100); {
		case n < 25 || len(w.live) == 0:
			ok = w.insert()
		case n < 55:
			ok = w.update()
		case n < 60:
			ok = w.delete()
		case n < 70:
			ok = w.multi()
		case n < 92:
			w.read()
		default:
			w.status()
		}
		if !ok {
			// A refusal: let a refusing spool (Redis down, a full disk)
			// breathe.
			select {
			case <-stop:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// op is one operation of POST /v1/transactions.
type op struct {
	Op     string         `json:"op"`
	Table  string         `json:"table"`
	ID     string         `json:"id,omitempty"`
	Values map[string]any `json:"values,omitempty"`
}

func (w *campaignWriter) insertOp() (op, history.Write, *ownedRow) {
	r := &ownedRow{id: uuid.NewString(), counter: w.next()}
	return op{Op: "insert", Table: campaignTable, Values: map[string]any{"id": r.id, "owner": w.hc.Name(), "counter": r.counter}},
		history.Write{Row: r.id, Op: history.Insert, Counter: r.counter}, r
}

// pick returns a live row at random, with its index.
func (w *campaignWriter) pick() (int, *ownedRow) {
	i := w.rng.IntN(len(w.live))
	return i, w.live[i]
}

func (w *campaignWriter) insert() bool {
	o, hw, r := w.insertOp()
	if w.send([]op{o}, []history.Write{hw}) {
		w.live = append(w.live, r)
		return true
	}
	return false
}

func (w *campaignWriter) update() bool {
	i, r := w.pick()
	v := w.next()
	ok := w.send([]op{{Op: "update", Table: campaignTable, ID: r.id, Values: map[string]any{"counter": v}}},
		[]history.Write{{Row: r.id, Op: history.Update, Counter: v}})
	w.settle(ok, i, r, v)
	return ok
}

func (w *campaignWriter) delete() bool {
	i, r := w.pick()
	ok := w.send([]op{{Op: "delete", Table: campaignTable, ID: r.id}}, []history.Write{{Row: r.id, Op: history.Delete}})
	w.live = append(w.live[:i], w.live[i+1:]...)
	if ok {
		w.gone = append(w.gone, r.id)
	}
	return ok
}

// multi sends one transaction of several operations: a new row inserted
// and a live one updated, in either order.
func (w *campaignWriter) multi() bool {
	i, r := w.pick()
	ins, insW, nr := w.insertOp()
	v := w.next()
	upd := op{Op: "update", Table: campaignTable, ID: r.id, Values: map[string]any{"counter": v}}
	updW := history.Write{Row: r.id, Op: history.Update, Counter: v}
	ops, ws := []op{ins, upd}, []history.Write{insW, updW}
	if w.rng.IntN(2) == 0 {
		ops, ws = []op{upd, ins}, []history.Write{updW, insW}
	}
	ok := w.send(ops, ws)
	w.settle(ok, i, r, v)
	if ok {
		w.live = append(w.live, nr)
	}
	return ok
}

// settle records a write of counter v to live row i: written, or, if its
// outcome is not a success, the row is abandoned (a refused write could be
// retried, but an unknown one must stay the row's last).
func (w *campaignWriter) settle(ok bool, i int, r *ownedRow, v int64) {
	if ok {
		r.counter = v
		return
	}
	w.live = append(w.live[:i], w.live[i+1:]...)
}

// send posts one transaction through a random api process and records it.
// It reports whether it was acknowledged.
func (w *campaignWriter) send(ops []op, writes []history.Write) bool {
	body, err := json.Marshal(map[string]any{"operations": ops})
	if err != nil {
		panic(err)
	}
	q := w.hc.Invoke(writes...)
	res, err := w.l.http.Post(w.url()+"/v1/transactions", "application/json", bytes.NewReader(body))
	if err != nil {
		q.Unknown(err)
		return false
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	switch {
	case err != nil:
		q.Unknown(err)
		return false
	case res.StatusCode/100 == 2:
		var a struct {
			TransactionID string `json:"transaction_id"`
		}
		if err := json.Unmarshal(b, &a); err != nil || a.TransactionID == "" {
			q.Unknown(fmt.Errorf("answer %d %s: %v", res.StatusCode, b, err))
			return false
		}
		q.OK(a.TransactionID)
		w.acked = append(w.acked, a.TransactionID)
		return true
	case res.StatusCode/100 == 4:
		err := fmt.Errorf("%d %s for %s", res.StatusCode, bytes.TrimSpace(b), body)
		q.Failed(err)
		w.l.invalid.Add(1)
		w.l.sample.CompareAndSwap(nil, err.Error())
		return false
	default:
		q.Unknown(fmt.Errorf("%d %s", res.StatusCode, bytes.TrimSpace(b)))
		return false
	}
}

// read reads one of the writer's rows, live or deleted, through a random
// api process.
func (w *campaignWriter) read() {
	var id string
	if len(w.gone) > 0 && w.rng.IntN(5) == 0 {
		id = w.gone[w.rng.IntN(len(w.gone))]
	} else if len(w.live) > 0 {
		_, r := w.pick()
		id = r.id
	} else {
		return
	}
	url := w.url()
	r := w.hc.InvokeRead(id, url)
	res, err := w.l.http.Get(url + "/v1/tables/" + campaignTable + "/" + id)
	if err != nil {
		r.Unknown(err)
		return
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
		var row struct {
			Counter *int64 `json:"counter"`
		}
		if err := json.NewDecoder(res.Body).Decode(&row); err != nil || row.Counter == nil {
			r.Unknown(fmt.Errorf("row %s: %v", id, err))
			return
		}
		r.Observed(*row.Counter, true)
	case http.StatusNotFound:
		r.Observed(0, false)
	default:
		r.Unknown(fmt.Errorf("%d", res.StatusCode))
	}
}

// status reads the state of one of the writer's acknowledged transactions.
func (w *campaignWriter) status() {
	if len(w.acked) == 0 {
		return
	}
	id := w.acked[w.rng.IntN(len(w.acked))]
	res, err := w.l.http.Get(w.url() + "/v1/transactions/" + id)
	if err != nil {
		return
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
		var s struct {
			State string `json:"state"`
		}
		if json.NewDecoder(res.Body).Decode(&s) == nil {
			w.hc.Status(id, history.State(s.State))
		}
	case http.StatusNotFound:
		w.hc.Status(id, history.StateNotFound)
	}
}

// errRefused is how a campaign reports valid writes refused with a 4xx.
var errRefused = errors.New("valid writes refused")

// refusals returns an error if valid writes were refused with a 4xx.
func (l *campaignLoad) refusals() error {
	if n := l.invalid.Load(); n > 0 {
		return fmt.Errorf("%w: %d, e.g. %v", errRefused, n, l.sample.Load())
	}
	return nil
}
