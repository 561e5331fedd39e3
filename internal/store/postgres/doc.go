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
// A batch is one database transaction. A planner decides what to send and
// executors send it, each attempt on a connection of its own.
//
// The planner (plan.go, judge.go) is pure: it turns a batch, the
// statements of its operations (ops.go) and what the first round trip
// learned (the transactions earlier runs applied or dead-lettered, the
// dead letters its retries name, the merge facts) into statements. It asks
// the gate about each transaction to run, in log order, and tells it of
// each refusal at once. It settles duplicates (applied before, or a second
// copy in the batch), transactions dead-lettered before, refusals (a dead
// letter) and superseded retries (a dead letter dropped at once); records
// the ids of the transactions to run in spool_applied with one statement;
// coalesces successive writes to one row of a table without cross-row
// constraints into one statement (store.Coalesce, from the facts of
// sqlMergeFacts); and merges each run of neighbouring inserts into one
// table with the same columns into one INSERT … SELECT FROM
// unnest($1::type[], …) of one array per column: a drain of single-row
// inserts costs the database two statements per batch, not one per row.
// On the slow path it plans one transaction at a time: its savepoint, its
// id, its statements, the link to the dead letter it retries.
//
// The executors share a small core (pipe.go) that sends a pipeline
// (pgx.Batch), reads its command tags against their checks, and commits
// with the read of the commit's position in the WAL (Outcome.LSN, which
// the replication watcher compares with the replicas' replay positions) in
// one round trip. ApplyBatch runs them in this order, each attempt rolled
// back before the next:
//
//   - leanExec: one pipeline. The lookup is replaced by statements that
//     fail in the database where its results would have stopped the batch:
//     the fence recorded and checked (a newer fencing token), a check that
//     no transaction of the batch was dead-lettered before; one applied
//     before fails spool_applied's key. The commit rides in the pipeline
//     when no statement's row count must be checked first. A batch with a
//     retry, or one touching a row twice (coalescing reads its facts
//     first), starts on the fast path. A batch the lean pipeline cannot
//     settle (a transaction run before, one the gate refuses, before the
//     gate is told of it: it may have run before) runs on the fast path.
//   - fastExec: two pipelines. The first begins the transaction, records
//     the fencing token (store.Gate.Fence), looks up earlier runs, the
//     retried dead letters (locked, so a drop waits for the batch) and, for
//     a batch touching a row twice, the merge facts; while the database
//     works on it, the operations are turned into statements. The second is
//     the plan, with the commit when nothing needs checking first.
//   - slowExec: when any statement of the fast path fails permanently, an
//     update or delete finds no row, an operation names a table or column
//     that does not exist, a deferred constraint refuses the commit, or
//     another applier recorded one of the ids meanwhile. It runs with SET
//     CONSTRAINTS ALL IMMEDIATE, so that a deferred constraint fails the
//     transaction that broke it and not the commit, and runs each
//     transaction in a savepoint of its own, its id and its statements in
//     one pipeline: a failing transaction is rolled back alone and
//     dead-lettered, with its SQLSTATE, in the same database transaction,
//     and the gate hears of it before it is asked about the next
//     transaction. The savepoint shares the transaction's pipeline when
//     every statement in it ran on the connection in this call (so pgx has
//     it prepared); otherwise it takes a round trip of its own, since a
//     failure to prepare aborts the transaction before the savepoint would
//     exist. If a statement left pgx's cache all the same, the slow path
//     runs again taking every savepoint on its own. Its savepoints are
//     subtransactions: a batch of more than 64 of them overflows the
//     backend's subtransaction cache, which costs replicas some work until
//     the batch commits; the lean and fast paths use none.
//
// BenchmarkPaths runs the same batches of 500 on each executor alone and
// shows what each buys: the lean path's one round trip against the fast
// path's two, the fast path against a savepoint per transaction, and the
// slow path's shared round trip against a savepoint on its own.
//
// A transient failure (see classify) on any path rolls the whole batch
// back and is returned; so is a newer fencing token (store.ErrFenced).
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
