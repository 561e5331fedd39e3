// Package events is spool's live events: every change to a row and every
// state of a transaction, in log order, to subscribers that each follow a
// table (with the list route's filters) and any transactions they name.
//
// A Hub turns the changes of transactions (changes.Change) into messages
// and fans them out. It hears them one of two ways:
//
//   - a local log: the feed of state changes hands them to an Intake, a
//     bounded queue the hub drains; a queued transaction is held until its
//     append succeeded (changes.Change.Logged) and dropped if it was
//     refused. Cursors are the hub's own: an epoch drawn at start and a
//     sequence, so a cursor of an earlier run is known to be unusable.
//   - a shared log (Redis): every process's hub reads the log's events
//     stream (Stream), written queued by the append script in the same
//     atomic step as the append, and applied, replicated or failed by the
//     process that settles the batch, before the batch leaves the log
//     (settle.Config.Events). Cursors are stream ids, the same in every
//     process, so a subscriber resumes on any.
//
// Each change is resolved once per process. A queued insert decides its
// row alone (its values, which the change carries) and a delete leaves
// none: neither is read. The rows of a queued update or upsert, and of a
// failed transaction (as the database has them once it is withdrawn),
// are read through the gateway's smart read, a batch's rows of a table at
// once. Each message is encoded once; subscribers share the messages. Rows of a table nobody
// follows are not read until a subscriber resumes from before them. The
// hub keeps the last Config.History messages to resume from; older
// cursors are resumed from the stream (Redis) or get a reset.
//
// A subscriber has a bounded buffer and is never waited for: one whose
// buffer fills reads on from the history; one further behind than the
// history is closed with a reason and its cursor.
package events
