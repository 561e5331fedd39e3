// Package telemetry is the telemetry lane: for high-rate samples where
// losing the oldest is better than blocking the newest. It sits beside the
// durable transaction path and shares nothing with it but the database.
//
// Each configured table has a lane: a bounded in-memory Ring (a fixed
// array; a full ring drops its oldest sample to take the newest, counts
// it, and warns), a writer that drains the ring into the table in batches
// (DefaultBatchSize rows, or whatever waited DefaultFlushInterval; up to
// DefaultCatchUpBatches batches in one transaction when it fell behind)
// through the store's bulk path (an Inserter: COPY on PostgreSQL, prepared
// multi-row INSERTs on SQLite), and spill files that take the batches
// while the database does not answer.
//
// # Guarantees
//
// A sample accepted by Ingest is written to its table exactly once, unless
// it is counted as dropped: pushed out of a full ring (overflow_count),
// removed with the oldest spill file when the spill reaches its cap, or
// refused by a failing disk (spill_rows_dropped); or counted as rejected
// (the database refused the row for good). Samples live in memory until
// their batch is in the database or in a fsynced spill file: a crash of
// the process loses what the rings held, which is the lane's trade.
//
// Each batch is written in one database transaction, so a batch that
// failed for a transient reason (the database unreachable, locked, slow
// beyond WriteTimeout) wrote nothing and is spilled whole; replaying it
// writes it once. A row the database refuses for good is left out of its
// batch and counted, and the batch's other rows are written. Spill files
// are replayed oldest first, and while any wait, new batches are spilled
// behind them, so rows reach the table in the order they were taken. A
// checkpoint after each replayed chunk lets a restart resume after it; a
// crash between a chunk's commit and its checkpoint writes that chunk
// (at most BatchSize rows) again, and so does a commit whose answer was
// lost with the connection (the batch, at most MaxBatchSize rows, is
// spilled though it landed); a
// table with a primary key refuses such copies and counts them as
// rejected, so give telemetry tables a key spool generates (uuid).
//
// # Values
//
// Rows are checked at intake against the catalog as any write is
// (schema.Table.CheckValues: unknown columns, types, NOT NULL) and held in
// canonical form. A missing key that spool can generate (a single uuid or
// text key) gets a UUIDv7; a missing column with a literal default
// (including now()) gets it at intake, so a timestamp default is the time
// spool took the sample, not the time a replay wrote it; other missing
// columns are left to the database. A lane looks its table up once, at
// New; a schema change needs a restart.
//
// # HTTP
//
// POST /v1/ingest/{table} takes a JSON array of row objects
// (Content-Type application/json) or NDJSON, one row object per line
// (application/x-ndjson; any white space between objects is accepted). It
// answers 202 {"accepted": N, "dropped": M}: N rows went into the ring and
// M older samples were pushed out of the full ring to make room. A request
// is taken whole or not at all: a body that is not JSON, a row that is not
// an object, or a row that does not fit the table is a 400 naming the row
// (from 0) and the problem, {"error": "row 3: column \"value\" of table
// \"readings\": must be a number, not a string", "row": 3}, and nothing of
// the request is accepted. An empty request is a 400; a table without a
// lane a 404; another media type a 415; a body over MaxBodyBytes or more
// than MaxRequestRows rows a 413; before Start or after Stop a 503 with
// Retry-After.
//
// GET /v1/ingest/status lists every lane: the ring's figures
// (current_size, max_size, utilization_pct, overflow_count,
// overflow_rate_pct, total_added), rows_dropped, and the writer's (state,
// rows written and replayed, batches, last write, rejected rows with the
// latest errors, failed attempts and the last error, spill files, rows
// and bytes pending, rows dropped at the spill). GET /api/buffer/status
// is the default lane's ring in the seed's shape. GET /api/buffer/health
// answers 200 {"status": "healthy"} or 503 with "degraded" (a ring above
// its warning threshold, or the database unreachable and batches spilled)
// or "unhealthy" (the spill failing, so samples are lost; or the lanes not
// running) and a reason.
//
// # Lifecycle
//
// New checks the configuration and looks the tables up; Start opens the
// spill files (replaying what an earlier run left) and starts one writer
// per lane; Stop refuses new samples, lets each writer finish its batch in
// flight, and flushes the rings into the database, or into the spill files
// when it does not answer within StopTimeout. Stop is synchronous and safe
// to call twice and before Start.
package telemetry
