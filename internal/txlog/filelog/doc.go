// Package filelog is spool's local log, its default buffer: a durable FIFO
// of transactions in a directory on local disk.
//
// # Files
//
// The directory holds segment files, the ack checkpoint and a lock file:
//
//	00000000000000000001.seg   records 1 …
//	00000000000000004711.seg   records 4711 … (the last: appends go here)
//	ack.checkpoint             the highest acknowledged sequence number
//	LOCK                       flock'ed while a Log has the directory open
//
// A segment is named by the sequence number of its first record, in 20
// digits so that name order is log order. The writer starts a new segment
// when the next record would take the last one past Config.SegmentSize; a
// record larger than that gets a segment of its own. A new segment's
// directory entry is synced before anything is written to it.
//
// # Records
//
// A record is a 16-byte header and a payload, all integers little-endian:
//
//	offset 0   u32  payload length
//	offset 4   u32  CRC-32C (Castagnoli) of the sequence number's 8 bytes, then the payload
//	offset 8   u64  sequence number
//	offset 16  payload: the JSON encoding of the txn.Transaction
//
// Sequence numbers start at 1 and grow by one per record, across segments,
// and are never reused: not after records are acknowledged, not after every
// segment but the last is deleted, not after a restart. Entry.Pos is the
// sequence number in decimal. Payloads decode with json.Decoder.UseNumber,
// so numbers come back as json.Number with every digit.
//
// # Durability: group commit
//
// Append returns once its record is written and fdatasync'ed. One writer
// goroutine takes the first queued append, drains whatever else is queued
// already (it never waits for more), writes the group with one write call,
// syncs once and answers every append of the group. Appends that arrive
// meanwhile queue behind the sync in flight, so groups grow with load by
// themselves. An Append honours its context while it is queued; once the
// writer has taken it, it is written and synced whatever the context does.
//
// A failed sync is fatal, and so is a failed write for any reason but a
// full disk: the log never retries it (after a failed fsync the page
// cache's state is unknown), every later Append fails with an error
// wrapping ErrFailed, and the log must be closed and reopened, which
// rereads what is really on disk. Claim, Ack and Pending go on serving the
// entries that were durable before the failure.
//
// A write that fails with ENOSPC (or EDQUOT) is undone instead: the
// segment is truncated back to its synced size and the truncation synced.
// Only that group fails, with an error wrapping ErrNoSpace, and the next
// group reuses its sequence numbers, so appends succeed again as soon as
// there is space. If the truncation or its sync fails, the log fails as
// above. Err reports a full disk for a few seconds after each refusal, for
// readiness probes.
//
// # Claim and Ack
//
// Claim takes entries past its cursor, only entries that are already
// durable. Transactions made durable are kept in memory until claimed, up
// to Config.ClaimCache of them (an append that finds it full is not
// kept), and Claim hands them over as Append was given them; any other
// entry (the drain fell further behind, or the log was reopened) it reads
// from the segment files through a small buffer, so memory does not grow
// with the log. Ack takes claimed entries in claim order; it writes
// the highest acknowledged sequence number to the checkpoint (temporary
// file, fsync, rename, fsync of the directory) and then deletes every
// segment, other than the last, whose records are all acknowledged. It
// writes the checkpoint only when a segment is to go, or a second after
// the last one, and at Close. After a restart the cursor starts after the
// checkpoint, so entries claimed but not acknowledged, and those
// acknowledged after the last checkpoint, are delivered again: at least
// once, and the database dedupes by transaction id.
//
// # Recovery
//
// Open deletes segments the checkpoint covers entirely, without reading
// them, then validates every record of the others: length, checksum and
// sequence number. A bad record in the last segment after which no valid
// record can be found (trying every later offset for a plausible header
// whose checksum verifies) is a torn tail, left by a crash in the middle of
// a write that no Append had returned: the segment is truncated after the
// last good record and synced, and the cut is logged at Warn level with a
// *TornTailError. Any other damage, a bad record followed by a valid one,
// a bad record in an earlier segment, records missing between segments or
// before the first one, is never skipped: Open returns a *CorruptionError
// naming the file and the offset. Check runs the same scan read-only and
// reports what it finds.
//
// # Limits
//
// One Log per directory (the lock file says so), one process. The log
// keeps no record in memory; its memory is the append queue
// (Config.QueueLength), one group's write buffer (Config.MaxBatchBytes)
// and a 64 KiB read buffer per reader.
package filelog
