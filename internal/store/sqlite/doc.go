// Package sqlite is the embedded store: spool's default database, a single
// SQLite file driven by modernc.org/sqlite (pure Go, no cgo).
//
// The file runs in WAL mode with synchronous=FULL, so a committed batch
// survives a power cut, and foreign keys are enforced. Writes go through a
// pool of exactly one connection, since SQLite has one writer; each batch is
// one BEGIN IMMEDIATE transaction in which every spool transaction runs in
// its own savepoint, so a permanent failure rolls back that transaction
// alone. Reads use a separate pool of query-only connections, which WAL lets
// run beside the writer.
//
// The statements on the user's tables are built by package sqlgen in its
// SQLite dialect (see gen): every value a ? parameter in the form SQLite
// stores it (see bind), every identifier from the catalog and quoted. A
// run of plain inserts into one table runs as one multi-row INSERT, and the
// statements stay prepared across batches (stmtCache), the telemetry
// lane's bulk inserts (InsertRows) among them.
//
// Errors are classified once, by SQLite result code (see classify): a
// constraint violation, a datatype mismatch, an oversized value or a missing
// row is permanent and dead-letters its transaction; a busy or locked
// database, an I/O error, a full disk, a cancelled context or a closed
// database is transient and rolls back the whole batch.
//
// Column kinds map onto SQLite storage as follows: booleans are stored as
// 1/0, timestamps as their canonical text (schema.TimeFormat), JSON and
// arrays as JSON text, numeric values as decimal text that the column's
// NUMERIC affinity converts (so trailing zeros and digits past the fifteenth
// are not kept), and bytes as blobs.
package sqlite
