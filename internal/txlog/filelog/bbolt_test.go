package filelog

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/spoolgw/spool/internal/txn"
)

// boltLog is the alternative the issue asked to measure: the same group
// commit (one writer drains what is queued, never lingers) over bbolt, one
// db.Update with bbolt's default fsync per group, each record a key of the
// big-endian sequence number in one bucket. Only the append path exists;
// it is here to be benchmarked against Log.Append, not used.
type boltLog struct {
	db   *bolt.DB
	reqs chan *boltReq
	stop chan struct{}
	done chan struct{}
	next uint64
}

type boltReq struct {
	payload []byte
	seq     uint64
	err     error
	done    chan struct{}
}

var boltBucket = []byte("log")

func openBolt(path string) (*boltLog, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, err
	}
	bl := &boltLog{db: db, reqs: make(chan *boltReq, DefaultQueueLength),
		stop: make(chan struct{}), done: make(chan struct{}), next: 1}
	go bl.run()
	return bl, nil
}

func (bl *boltLog) append(ctx context.Context, tx *txn.Transaction) (uint64, error) {
	payload, err := json.Marshal(tx)
	if err != nil {
		return 0, err
	}
	r := &boltReq{payload: payload, done: make(chan struct{})}
	select {
	case bl.reqs <- r:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	<-r.done
	return r.seq, r.err
}

func (bl *boltLog) run() {
	defer close(bl.done)
	var batch []*boltReq
	for {
		select {
		case <-bl.stop:
			return
		case r := <-bl.reqs:
			batch = append(batch[:0], r)
		drain:
			for {
				select {
				case r := <-bl.reqs:
					batch = append(batch, r)
				default:
					break drain
				}
			}
			err := bl.db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(boltBucket)
				for _, r := range batch {
					var key [8]byte
					binary.BigEndian.PutUint64(key[:], bl.next)
					if err := b.Put(key[:], r.payload); err != nil {
						return err
					}
					r.seq = bl.next
					bl.next++
				}
				return nil
			})
			for _, r := range batch {
				r.err = err
				close(r.done)
			}
		}
	}
}

func (bl *boltLog) close() error {
	close(bl.stop)
	<-bl.done
	return bl.db.Close()
}

func BenchmarkBboltAppend(b *testing.B) {
	for _, writers := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			bl, err := openBolt(filepath.Join(b.TempDir(), "log.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer bl.close()
			tx := benchTx()
			runWriters(b, writers, func(ctx context.Context) error {
				_, err := bl.append(ctx, tx)
				return err
			})
		})
	}
}

// TestBoltLog checks that the benchmarked alternative really stores what it
// acknowledges, so the comparison is fair.
func TestBoltLog(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "log.db")
	bl, err := openBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if seq, err := bl.append(t.Context(), testTx(i)); err != nil || seq != uint64(i+1) {
			t.Fatalf("append %d: seq %d, %v", i, seq, err)
		}
	}
	if err := bl.close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(boltBucket).Stats().KeyN; n != 5 {
			return fmt.Errorf("%d keys, want 5", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
