// Package postgres is the PostgreSQL store: spool drains into a PostgreSQL
// primary through a pgx connection pool and reads from it.
//
// Every value travels as a bind parameter of the extended protocol, never in
// SQL text; every identifier comes from the catalog and is quoted by
// pgx.Identifier. Values go in PostgreSQL's text format (bytes excepted), so
// that the database, not the driver, judges them: an out-of-range integer or
// a malformed timestamp comes back as a SQLSTATE (22003, 22007) that dead-
// letters its transaction, never as a client-side encoding error.
// Statements that take no values (begin, commit, savepoints, migrations) go
// through pgconn's ExecParams, which is the extended protocol too; the one
// use of the simple protocol is Exec, which runs the operator's schema file.
//
// A batch is one database transaction. Its first round trip begins it,
// records the fencing token (store.Gate.Fence) and looks up which of its
// transactions earlier runs applied or dead-lettered. The fast path then
// sends every statement of every transaction in one pipeline (pgx.Batch),
// with one statement that records all their ids in spool_applied, reads the
// results and commits: about three round trips for a batch of any size. If
// any statement fails permanently (or an update or delete finds no row), the
// attempt is rolled back and the batch runs again on the slow path, where
// each transaction has a savepoint of its own, so that the failing one alone
// is rolled back and dead-lettered in the same database transaction. A
// transient failure (see classify) rolls back the whole batch and is
// returned.
//
// The slow path runs with SET CONSTRAINTS ALL IMMEDIATE, so that a deferred
// constraint fails the transaction that broke it and not the commit. Its
// savepoints are subtransactions: a batch of more than 64 of them overflows
// the per-backend subtransaction cache, which costs replicas some work until
// the batch commits; the fast path, the common one, uses none.
//
// Sessions run with TimeZone=UTC, DateStyle=ISO and extra_float_digits=3, so
// the text forms read back are exact and parse the same on every server.
// Reads select each column as text (bytea excepted, arrays as text[]) and
// turn it into the canonical form of its kind (see schema.Column.Normalize).
// Text comparisons and orderings use the "C" collation, so that the database
// orders rows as schema.Compare does in the overlay.
package postgres
