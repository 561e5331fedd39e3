package telemetry

import (
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func newRing(t testing.TB, cfg RingConfig) *Ring[int] {
	t.Helper()
	r, err := NewRing[int](cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRingDropsOldest(t *testing.T) {
	t.Parallel()
	r := newRing(t, RingConfig{Capacity: 5})
	var evicted []int
	for i := 1; i <= 8; i++ {
		if old, dropped := r.Put(i); dropped {
			evicted = append(evicted, old)
		}
	}
	if want := []int{1, 2, 3}; !slices.Equal(evicted, want) {
		t.Fatalf("evicted %v, want %v", evicted, want)
	}
	if got, want := r.Peek(10), []int{4, 5, 6, 7, 8}; !slices.Equal(got, want) {
		t.Fatalf("Peek = %v, want %v", got, want)
	}
	if got, want := r.Get(2), []int{4, 5}; !slices.Equal(got, want) {
		t.Fatalf("Get(2) = %v, want %v", got, want)
	}
	// PutAll drops the same way: 6 7 8 + 9 10 11 in a ring of 5.
	if d := r.PutAll([]int{9, 10, 11}); d != 1 {
		t.Fatalf("PutAll dropped %d, want 1", d)
	}
	if got, want := r.Get(10), []int{7, 8, 9, 10, 11}; !slices.Equal(got, want) {
		t.Fatalf("Get = %v, want %v", got, want)
	}
	// A PutAll larger than the ring keeps its newest items.
	if d := r.PutAll([]int{1, 2, 3, 4, 5, 6, 7}); d != 2 {
		t.Fatalf("PutAll dropped %d, want 2", d)
	}
	if got, want := r.Get(10), []int{3, 4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("Get = %v, want %v", got, want)
	}
	if got := r.Get(1); len(got) != 0 {
		t.Fatalf("Get on an empty ring = %v", got)
	}
}

// TestRingModel runs random operations against a slice model.
func TestRingModel(t *testing.T) {
	t.Parallel()
	for _, capacity := range []int{1, 2, 3, 7, 64} {
		r := newRing(t, RingConfig{Capacity: capacity})
		var model []int
		rng := rand.New(rand.NewPCG(1, uint64(capacity)))
		next := 0
		for range 20_000 {
			switch op := rng.IntN(10); {
			case op < 5:
				next++
				old, dropped := r.Put(next)
				model = append(model, next)
				if len(model) > capacity {
					if !dropped || old != model[0] {
						t.Fatalf("cap %d: Put dropped (%d, %v), want (%d, true)", capacity, old, dropped, model[0])
					}
					model = model[1:]
				} else if dropped {
					t.Fatalf("cap %d: Put dropped with room", capacity)
				}
			case op < 6:
				vs := make([]int, rng.IntN(2*capacity+1))
				for i := range vs {
					next++
					vs[i] = next
				}
				d := r.PutAll(vs)
				model = append(model, vs...)
				wantD := max(0, len(model)-capacity)
				model = model[wantD:]
				if d != wantD {
					t.Fatalf("cap %d: PutAll dropped %d, want %d", capacity, d, wantD)
				}
			case op < 8:
				n := rng.IntN(capacity + 2)
				got := r.Get(n)
				k := min(n, len(model))
				if !slices.Equal(got, model[:k]) {
					t.Fatalf("cap %d: Get(%d) = %v, want %v", capacity, n, got, model[:k])
				}
				model = model[k:]
			default:
				n := rng.IntN(capacity + 2)
				if got, want := r.Peek(n), model[:min(n, len(model))]; !slices.Equal(got, want) {
					t.Fatalf("cap %d: Peek(%d) = %v, want %v", capacity, n, got, want)
				}
			}
			if r.Len() != len(model) {
				t.Fatalf("cap %d: Len %d, want %d", capacity, r.Len(), len(model))
			}
		}
	}
}

func TestRingStats(t *testing.T) {
	t.Parallel()
	r := newRing(t, RingConfig{Capacity: 3})
	if s := r.Stats(); s != (RingStats{MaxSize: 3}) {
		t.Fatalf("empty: %+v", s)
	}
	r.Put(1)
	if s := r.Stats(); s.CurrentSize != 1 || s.UtilizationPct != 33.33 || s.TotalAdded != 1 || s.OverflowRatePct != 0 {
		t.Fatalf("one item: %+v", s)
	}
	for i := range 7 { // 8 added, 5 dropped
		r.Put(i)
	}
	want := RingStats{CurrentSize: 3, MaxSize: 3, UtilizationPct: 100, OverflowCount: 5, OverflowRatePct: 62.5, TotalAdded: 8}
	if s := r.Stats(); s != want {
		t.Fatalf("after overflow: %+v, want %+v", s, want)
	}
	r.Get(2)
	want.CurrentSize, want.UtilizationPct = 1, 33.33
	if s := r.Stats(); s != want {
		t.Fatalf("after Get: %+v, want %+v", s, want)
	}
}

func TestRingConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []RingConfig{{Capacity: -1}, {WarnThreshold: 101}, {WarnThreshold: -5}, {WarnInterval: -time.Second}} {
		if _, err := NewRing[int](c); err == nil {
			t.Errorf("NewRing(%+v) accepted", c)
		}
	}
	r := newRing(t, RingConfig{})
	if r.Cap() != DefaultCapacity {
		t.Fatalf("default capacity %d", r.Cap())
	}
}

// TestRingConcurrent runs producers and consumers at once (run it with
// -race): every item is either consumed once, dropped, or still in the
// ring, and each producer's items come out in the order put.
func TestRingConcurrent(t *testing.T) {
	t.Parallel()
	const producers, perProducer, consumers = 4, 20_000, 2
	r, err := NewRing[[2]int](RingConfig{Capacity: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var dropped [producers]int
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				if _, d := r.Put([2]int{p, i}); d {
					dropped[p]++
				}
			}
		})
	}
	done := make(chan struct{})
	got := make([][][2]int, consumers)
	var cwg sync.WaitGroup
	for c := range consumers {
		cwg.Go(func() {
			var buf [][2]int
			for {
				select {
				case <-done:
					return
				default:
				}
				buf = r.AppendGet(buf[:0], 64)
				// Within one Get, each producer's items are in order.
				last := [producers]int{-1, -1, -1, -1}
				for _, it := range buf {
					if it[1] <= last[it[0]] {
						t.Errorf("producer %d: item %d after %d in one Get", it[0], it[1], last[it[0]])
						return
					}
					last[it[0]] = it[1]
				}
				got[c] = append(got[c], buf...)
			}
		})
	}
	wg.Wait()
	close(done)
	cwg.Wait()
	rest := r.Get(r.Cap())
	seen := make(map[[2]int]bool)
	for _, g := range append(got, rest) {
		for _, it := range g {
			if seen[it] {
				t.Fatalf("item %v came out twice", it)
			}
			seen[it] = true
		}
	}
	totalDropped := 0
	for _, d := range dropped {
		totalDropped += d
	}
	if len(seen)+totalDropped != producers*perProducer {
		t.Fatalf("consumed or left %d + dropped %d != put %d", len(seen), totalDropped, producers*perProducer)
	}
	s := r.Stats()
	if s.TotalAdded != producers*perProducer || s.OverflowCount != uint64(totalDropped) {
		t.Fatalf("stats %+v; dropped %d", s, totalDropped)
	}
}

// TestRingAlerts checks the warnings: once per threshold crossing, the
// all-clear when utilisation falls back, crossings within WarnInterval
// counted instead of logged, overflow warnings rate-limited with a count.
func TestRingAlerts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rec := &logRecorder{}
		r := newRing(t, RingConfig{Name: "readings", Capacity: 10, WarnThreshold: 80, WarnInterval: time.Minute, Logger: slog.New(rec)})
		const above, below, full = "above its warning threshold", "back below", "ring full"
		for i := range 7 {
			r.Put(i)
		}
		if n := rec.count(slog.LevelWarn, above); n != 0 {
			t.Fatalf("warned at 70%%: %d", n)
		}
		r.Put(7) // 80 %
		r.Put(8)
		r.Put(9)
		if n := rec.count(slog.LevelWarn, above); n != 1 {
			t.Fatalf("%d threshold warnings after one crossing, want 1", n)
		}
		for i := range 25 { // overflow: 25 drops within one interval
			r.Put(100 + i)
		}
		if n := rec.count(slog.LevelWarn, full); n != 1 {
			t.Fatalf("%d overflow warnings, want 1 per interval", n)
		}
		r.Get(3) // 70 %: cleared
		if n := rec.count(slog.LevelInfo, below); n != 1 {
			t.Fatalf("%d all-clear lines, want 1", n)
		}
		r.Get(1)
		if n := rec.count(slog.LevelInfo, below); n != 1 {
			t.Fatalf("all-clear repeated: %d", n)
		}
		r.PutAll([]int{1, 2}) // crosses again within the interval: counted, not logged
		r.Get(5)
		if n := rec.count(slog.LevelWarn, above); n != 1 {
			t.Fatalf("crossing within the interval logged: %d warnings", n)
		}
		if n := rec.count(slog.LevelInfo, below); n != 1 {
			t.Fatalf("all-clear of an unlogged crossing logged: %d", n)
		}
		time.Sleep(time.Minute)
		r.PutAll([]int{1, 2, 3, 4, 5}) // 3+5 = 8: crosses after the interval
		if n := rec.count(slog.LevelWarn, above); n != 2 {
			t.Fatalf("%d threshold warnings after a second crossing, want 2", n)
		}
		if v := rec.attr(slog.LevelWarn, above, "crossings_not_logged"); len(v) != 2 || v[1].Int64() != 1 {
			t.Fatalf("crossings_not_logged = %v, want the second warning to count 1", v)
		}
		r.PutAll([]int{1, 2, 3, 4, 5}) // 3 more drops: the interval since the last overflow warning has passed
		if n := rec.count(slog.LevelWarn, full); n != 2 {
			t.Fatalf("%d overflow warnings, want 2", n)
		}
		if v := rec.attr(slog.LevelWarn, full, "dropped"); len(v) != 2 || v[0].Int64() != 1 || v[1].Int64() != 24+3 {
			t.Fatalf("dropped counts %v, want 1 then 27", v)
		}
	})
}
