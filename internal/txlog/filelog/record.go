package filelog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// headerSize is the fixed size of a record header: payload length (u32),
// CRC-32C (u32) over the sequence number and the payload, sequence number
// (u64), all little-endian.
const headerSize = 16

// castagnoli is the CRC-32C table; the hash/crc32 package uses the SSE4.2
// instruction for it where the CPU has one.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Why a record fails to decode. They end up in CorruptionError.Err and
// TornTailError.Err.
var (
	errShortRecord = errors.New("record cut short")
	errLength      = errors.New("implausible record length")
	errChecksum    = errors.New("checksum mismatch")
	errSequence    = errors.New("sequence number out of order")
	errMissing     = errors.New("records missing")
)

// header is the decoded fixed part of a record.
type header struct {
	length uint32
	crc    uint32
	seq    uint64
}

func decodeHeader(b []byte) header {
	return header{
		length: binary.LittleEndian.Uint32(b[0:4]),
		crc:    binary.LittleEndian.Uint32(b[4:8]),
		seq:    binary.LittleEndian.Uint64(b[8:16]),
	}
}

// checksum is the CRC-32C over the little-endian sequence number and then
// the payload.
func checksum(seq uint64, payload []byte) uint32 {
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], seq)
	return crc32.Update(crc32.Checksum(s[:], castagnoli), castagnoli, payload)
}

// appendRecord appends the encoded record for seq and payload to dst.
func appendRecord(dst []byte, seq uint64, payload []byte) []byte {
	var h [headerSize]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:8], checksum(seq, payload))
	binary.LittleEndian.PutUint64(h[8:16], seq)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// plausible reports whether a payload length could belong to a record the
// log wrote: not empty (a transaction never encodes to nothing) and at most
// maxPayload.
func plausible(length uint32, maxPayload int) bool {
	return length > 0 && int64(length) <= int64(maxPayload)
}

// decodeRecord decodes the record at the start of b. It returns the
// sequence number, the payload (a slice of b) and the record's encoded size.
// A payload longer than maxPayload, one that b cuts short, or a checksum
// mismatch is an error.
func decodeRecord(b []byte, maxPayload int) (seq uint64, payload []byte, size int, err error) {
	if len(b) < headerSize {
		return 0, nil, 0, errShortRecord
	}
	h := decodeHeader(b)
	if !plausible(h.length, maxPayload) {
		return 0, nil, 0, fmt.Errorf("%w: %d bytes", errLength, h.length)
	}
	size = headerSize + int(h.length)
	if len(b) < size {
		return 0, nil, 0, errShortRecord
	}
	payload = b[headerSize:size]
	if got := checksum(h.seq, payload); got != h.crc {
		return 0, nil, 0, fmt.Errorf("%w: stored %08x, computed %08x", errChecksum, h.crc, got)
	}
	return h.seq, payload, size, nil
}
