// Package storetest is the conformance suite every store.Store runs: SQLite
// and PostgreSQL pass the same tests, so the applier and the api can rely
// on one behaviour.
//
// The suite creates its tables with SQL both databases accept and checks
// only what the contract promises; a backend's own tests add what is
// specific to it (exact error codes, how a lock is held).
//
// Beyond store.Store's comments, the suite holds a store to these rules:
//
//   - A transaction already applied is a duplicate and the gate is not
//     asked about it.
//   - A transaction dead-lettered by an earlier run (the batch is replayed
//     after its log ack was lost) is not run again, even if it would now
//     succeed: its Outcome.Err is set and the gate is told again.
//   - Gate.Failed is called for transactions the gate refused, too.
//   - A missing row is an *store.ApplyError wrapping store.ErrMissingRow;
//     a database refusal is an *store.ApplyError with the database's code.
//   - Ascending order puts nulls first, descending last; neq excludes nulls.
package storetest
