// Package redislog is spool's Redis log: a durable FIFO of transactions in
// a Redis stream, shared by every spool process of a deployment, with the
// overlay (the pending changes reads merge) kept beside it in the same
// atomic step, and a lease that makes one applier of the log the active one.
//
// # Keys
//
// Every key of a log named n starts with "spool:{n}:". The {n} hash tag
// puts all of them in one Redis Cluster slot, which the scripts need (they
// touch many keys at once):
//
//	spool:{n}:stream                 stream: one entry per transaction, field "tx" = its JSON
//	                                 consumer group "appliers" (created at Open, from the start)
//	spool:{n}:tx:<txid>              hash of a pending transaction: "pos" = its stream id,
//	                                 and per row it changes, <row> = how many changes
//	spool:{n}:row:<row>              list of a row's pending changes, oldest first; each
//	                                 {"tx":<txid>,"kind":"update","values":{...}}
//	spool:{n}:ops:<table>            list of the table's pending changes, oldest first; each
//	                                 the row's list entry, '\n', the row's key
//	spool:{n}:seq:<table>            hash: a, h, x = changes ever added to the table's list,
//	                                 dropped from its head, evictions from elsewhere in it;
//	                                 e = an epoch drawn when it was made; never deleted
//	spool:{n}:tables                 set of the tables with pending changes
//	spool:{n}:counts                 hash: txs, rows, ops (the overlay's Stats)
//	spool:{n}:lease                  the applier lease: "<consumer>/<random>", PX TTL
//	spool:{n}:fence                  the fencing-token counter (INCR); never expires
//	spool:{n}:layout                 the version of this layout: 2
//	spool:{n}:synced                 written before each WAIT (Config.MinReplicas)
//	spool:{n}:events                 stream of state changes for live events (events.go):
//	                                 queued (by the append script), applied, replicated,
//	                                 failed; trimmed to about Config.EventsMaxLen entries
//
// <row> is len(table) in bytes, ':', table, ':', key: the length prefix
// keeps a table or key holding ':' from colliding with another ("a:b"/"c"
// is "3:a:b:c", "a"/"b:c" is "1:a:b:c"). The name n must not hold '{' or
// '}'. Nothing but spool may write these keys.
//
// Layout 1 (spool before the tables' lists of changes) had, instead of
// spool:{n}:ops:<table>, a set of the table's keys with pending changes,
// spool:{n}:tbl:<table>, and no layout key. Open moves such a log to
// layout 2 in one script call, which blocks Redis for as long as copying
// the pending changes takes (0.66 s for 100,000 changes to 50,000 rows on
// a 2-core machine), and refuses a log in a layout later than the one it knows. A spool of
// layout 1 must not run against the log after that (it would leave the
// tables' lists out of step): stop every process of a deployment before
// starting the new version.
//
// # Append
//
// One writer goroutine takes the first queued Append, drains whatever else
// is queued already (it never waits for more), and sends the group as one
// call of a Lua script (EVALSHA) that, for each transaction in order, adds
// the stream entry (XADD), the overlay entries (RPUSH to its rows and to
// their tables' lists, the transaction's hash) and the queued entry of the
// events stream. Redis runs a script atomically
// and writes its effects to the AOF as one MULTI/EXEC block, so no reader
// ever sees a transaction in the log without its overlay entries or the
// reverse, not even after a crash. Appends that arrive meanwhile queue
// behind the call in flight, so groups grow with load by themselves.
// (Config.MaxInFlight allows more than one call at a time; the default is
// one.)
//
// A reply means durable as far as the server's AOF setting goes: with
// appendfsync always, Redis fsyncs the AOF before it replies (and groups the
// fsync of every client in one event-loop turn). Open checks the server:
//
//   - a server still loading its dataset (just started: it answers
//     LOADING until its AOF is read back) is waited for, as long as Open's
//     context allows; any other failure to connect fails Open at once;
//   - maxmemory-policy must be noeviction, or Open fails (ErrUnsafeServer):
//     any other policy can evict the log's keys and silently drop
//     acknowledged writes;
//   - appendonly no, or appendfsync everysec or no, is logged at Warn with
//     what a crash can lose (everysec: about the last second of
//     acknowledged writes; AOF off: everything since the last snapshot);
//   - the server must be Redis 6.2 or later (XAUTOCLAIM);
//   - where CONFIG is refused (managed Redis), Open warns that it could not
//     verify and goes on.
//
// A transaction whose hash is still there (appended, not yet evicted) is not
// appended twice: the script returns its first stream id. go-redis retries a
// call whose connection broke before the reply, so this keeps a retry from
// doubling a transaction. An Append that fails with a network error may
// nevertheless have reached the log.
//
// # Replicas and Sentinel
//
// A redis-sentinel:// URL (see Config.URL) makes the client find the
// master through Sentinel and follow a failover. Config.MinReplicas makes
// every append script call, every Claim before it returns, every
// Lease.Acquire before its token is used and every LookupKey that finds a
// key send a write of spool:{n}:synced and WAIT on one connection (the
// write makes the WAIT cover everything before it, even when the call
// itself wrote nothing); fewer replicas within Config.ReplicaTimeout is
// ErrNotReplicated. An acknowledged append is then on MinReplicas
// replicas (in their memory: WAIT does not wait for a replica's fsync); a
// refused one is on the master, and is delivered once the replicas have
// it or lost with the master, never delivered before: no applier applies
// what a failover could take back. Acks, evictions and lease renewals are
// not waited for: a failover may lose the last of them, and they are
// redone (entries delivered again; an eviction precedes its ack in the
// replication stream).
//
// A Redis Cluster (a redis-cluster:// URL, or a server with
// cluster_enabled) is refused: ErrClusterUnsupported.
//
// # Claim and Ack
//
// Appliers read through the consumer group, each under its consumer name
// (Config.Consumer). On a log with a Lease only the lease's holder
// claims: the claim script checks the lease and runs XREADGROUP in one
// step, and waits for appends with a plain XREAD, which delivers nothing.
// The first Claim of a Log, the first after each Lease.Acquire (or
// Log.Takeover, which an applier calls when it becomes the active one) and
// the first after a failed read take over, with XAUTOCLAIM, the entries
// other consumers claimed (on a leased log all of them at once; without a
// lease those idle for Config.MinIdle, waiting for younger ones to age),
// so that they come first; then deliver the entries pending under their
// own name from the first, in stream order, and then new entries,
// waiting for at most Config.ClaimBlock per read so that the context and
// Close are honoured. Ack is a script: one XACK
// of all the entries, then the deletion of those it found pending, which
// gives the space back: XTRIM MINID up to the entry after the group's last
// delivered one or the oldest still pending, whichever is older
// (everything before both was delivered and is acknowledged), and XDEL
// for what was acknowledged behind a pending entry. So the stream holds
// exactly the entries not yet acknowledged, Pending is an XRANGE over it,
// and Stats.Depth is XLEN. Entry.Pos is the stream id; ComparePos orders
// positions.
//
// Delivery is at least once: an entry claimed and not acknowledged comes
// again, and the database dedupes by transaction id.
//
// # Overlay
//
// Overlay reads a row with one LRANGE of its list. It reads a table with
// one script call, which returns the table's counters and, if they show
// that only changes at the list's head went since the process's last read
// of it, only the changes added since; else the whole list. The process
// keeps what it read, decoded (up to MaxDecoded changes of a table), so a
// list of a table with a backlog costs the new changes and the merge, not
// the backlog. Concurrent reads of one table share one read: a caller
// that arrives while a read runs joins the next, which starts once that
// one ends, so no caller gets a read that began before its call. Evict is
// a script that removes transactions' entries from
// the rows they touched (found in their hashes) and from those rows'
// tables' lists: in log order, as the applier evicts, by dropping the
// lists' heads; else by scanning from the head. It drops tables left
// without changes and deletes the hashes: one call per 500 transactions.
// Values come back as JSON decodes them, numbers as json.Number.
//
// # Lease
//
// Lease.Acquire takes spool:{n}:lease with SET NX PX and draws a fencing
// token (INCR spool:{n}:fence) in the same script, renews it in the
// background with a compare-and-PEXPIRE, and reports its loss on a channel;
// Release is a compare-and-delete. Standbys try every Renew and take over
// within about TTL + Renew after the holder dies. The database rejects a
// commit under a token older than one already committed, so an applier
// paused past its lease cannot commit after its successor. The fence key
// must never go backwards: a Redis that lost it would hand out tokens the
// database refuses.
package redislog
