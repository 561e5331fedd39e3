// Package postgres is the PostgreSQL store: spool drains into a PostgreSQL
// primary through a pgx connection pool and reads from it.
//
// The statements on the user's tables are built by package sqlgen in its
// Postgres dialect (see gen): every value travels as a bind parameter of
// the extended protocol, never in SQL text; every identifier comes from
// the catalog and is quoted as pgx.Identifier quotes it, a table's
// qualified with the schema the catalog was read from. What is
// PostgreSQL's alone stays here: the unnest insert of merged runs, COPY,
// the pipelines and the bookkeeping statements.
//
// Values go in PostgreSQL's text format, so that the database, not the
// driver, judges them: an out-of-range integer or a malformed timestamp
// comes back as a SQLSTATE (22003, 22007) that dead-letters its
// transaction, never as a client-side encoding error, and a column of a
// type spool has no kind for (an enum, inet, interval) takes and gives
// PostgreSQL's text. Statements without parameters (begin, commit,
// savepoints, migrations) go through pgconn's ExecParams or a pipeline,
// the extended protocol too; the one use of the simple protocol is Exec,
// which runs the operator's schema file.
//
// # Applying a batch
//
// A batch is one database transaction, on one of two paths.
//
// The fast path takes two pipelines (pgx.Batch) and a commit, which rides
// in the second when none of its statements needs its row count checked
// first (see anyChecked): a batch of inserts and upserts takes two round
// trips, a distant database's main cost. It first tries one (the lean
// path, leanHead): the second pipeline alone, opened by the begin, the
// fence and checks that fail in the database where the first pipeline's
// results would have stopped the batch (a newer fencing token, a
// transaction dead-lettered before; one applied before fails
// spool_applied's key). If one fails, the batch is fenced out, or runs
// again with the first pipeline; so does a batch with a transaction the
// gate refuses, before the gate is told of it (it may have run before).
// The first
// begins the transaction, records the fencing token (store.Gate.Fence) and
// looks up which transactions of the batch earlier runs applied or
// dead-lettered; while the database works on it, the operations are turned
// into statements. The second records the ids of the transactions to run
// in spool_applied with one statement, and holds every statement of every
// transaction, in log order, with successive writes to one row of a table
// without cross-row constraints coalesced into one statement
// (store.Coalesce; the facts it needs, sqlMergeFacts, are read in the
// first pipeline), and each run of neighbouring inserts into one
// table with the same columns merged into one INSERT … SELECT FROM
// unnest($1::type[], …) of one array per column: a drain of single-row
// inserts costs the database two statements per batch, not one per row.
//
// If any statement fails permanently, an update or delete finds no row, an
// operation names a table or column that does not exist, or another
// applier recorded one of the ids meanwhile, the attempt is rolled back and
// the batch runs again on the slow path: each transaction in a savepoint of
// its own, its id and its statements in one pipeline, so that a failing
// transaction is rolled back alone and dead-lettered, with its SQLSTATE, in
// the same database transaction, and the gate hears of it before it is
// asked about the next transaction. The slow path runs with SET
// CONSTRAINTS ALL IMMEDIATE, so that a deferred constraint fails the
// transaction that broke it and not the commit. Its savepoints are
// subtransactions: a batch of more than 64 of them overflows the backend's
// subtransaction cache, which costs replicas some work until the batch
// commits; the fast path, the common one, uses none.
//
// A transient failure (see classify) on either path rolls the whole batch
// back and is returned. The commit and the read of its position in the WAL
// (Outcome.LSN, which the replication watcher compares with the replicas'
// replay positions) share the last round trip; a commit in the second
// pipeline that a deferred constraint refuses sends the batch down the
// slow path, like any permanent failure of its statements.
//
// Dead letters keep their attempts across retries (Transaction.RetryOf),
// the time of the first failure, the retry that replaced them and who
// dropped them; ListDeadLetters and DropDeadLetter serve the dead-letter
// queue API, as the SQLite store's do.
//
// COPY was measured against the unnest insert for the merged runs (see
// BenchmarkDrain's comment): at the applier's batches of 500 it was no
// faster, and it would break the pipeline into more round trips, so the
// store does not use it.
//
// # Reading
//
// Sessions run with TimeZone=UTC, DateStyle=ISO and extra_float_digits=3,
// so the text forms read back are exact and parse the same on every
// server. Get and Query are sqlgen's reads: they select each column as
// text (bytea as is, arrays as text[], see selectExpr) and scan turns it
// into the canonical form of its kind (see schema.Column.Normalize): a
// numeric keeps its digits ("1.50"), a float4 reads back as the shortest
// text that round-trips. Filters cast their values to the column kind's
// base type (castType), an IN list is one array parameter; text compares
// and orders in the "C" collation, byte-wise, as schema.Compare does in
// the overlay.
package postgres
