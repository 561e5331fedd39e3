package filelog

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzMaxPayload keeps fuzzed lengths in a range the fuzzer can reach.
const fuzzMaxPayload = 1 << 12

func seedSegment(n int) []byte {
	var b []byte
	for i := range n {
		b = appendRecord(b, uint64(i+1), []byte(`{"id":"`+string(rune('a'+i))+`","operations":[]}`))
	}
	return b
}

func FuzzDecodeRecord(f *testing.F) {
	seg := seedSegment(2)
	f.Add(seg)
	f.Add(seg[:headerSize+3])
	f.Add(seg[:5])
	f.Add(make([]byte, headerSize+8))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		seq, payload, n, err := decodeRecord(data, fuzzMaxPayload)
		if err != nil {
			if !isDecodeError(err) {
				t.Fatalf("decode error %v is not a decode error", err)
			}
			return
		}
		if n < headerSize+1 || n > len(data) || len(payload) != n-headerSize || len(payload) > fuzzMaxPayload {
			t.Fatalf("decoded size %d, payload %d bytes, from %d bytes", n, len(payload), len(data))
		}
		if enc := appendRecord(nil, seq, payload); !bytes.Equal(enc, data[:n]) {
			t.Fatalf("re-encoding gives %x, decoded from %x", enc, data[:n])
		}
	})
}

func FuzzRecover(f *testing.F) {
	seg := seedSegment(3)
	f.Add(seg, true)
	f.Add(seg, false)
	f.Add(seg[:len(seg)-4], true)
	f.Add(append(bytes.Clone(seg), make([]byte, 40)...), true)
	flipped := bytes.Clone(seg)
	flipped[headerSize+2] ^= 1
	f.Add(flipped, true)
	f.Add([]byte("garbage that is not a segment"), true)
	f.Fuzz(func(t *testing.T, data []byte, last bool) {
		var offs []int64
		res, err := scanSegment(bytes.NewReader(data), "fuzz.seg", int64(len(data)), 1, last, fuzzMaxPayload,
			func(off int64, seq uint64) {
				// Every record reported must verify, and be the next.
				got, _, _, derr := decodeRecord(data[off:], fuzzMaxPayload)
				if derr != nil || got != seq || seq != uint64(len(offs)+1) {
					t.Fatalf("reported record %d at %d: decodes to %d, %v", seq, off, got, derr)
				}
				offs = append(offs, off)
			})
		if int64(len(offs)) != res.records {
			t.Fatalf("%d records counted, %d reported", res.records, len(offs))
		}
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) || ce.Offset < 0 || ce.Offset > int64(len(data)) {
				t.Fatalf("scan error %v is not a corruption within the data", err)
			}
			return
		}
		if res.end < 0 || res.end > int64(len(data)) {
			t.Fatalf("end %d outside %d bytes", res.end, len(data))
		}
		switch {
		case res.torn != nil:
			if !last || res.torn.Offset != res.end || res.torn.Offset+res.torn.Dropped != int64(len(data)) {
				t.Fatalf("torn tail %+v with end %d of %d bytes (last %v)", res.torn, res.end, len(data), last)
			}
		case res.end != int64(len(data)):
			t.Fatalf("clean scan ended at %d of %d bytes", res.end, len(data))
		}
	})
}
