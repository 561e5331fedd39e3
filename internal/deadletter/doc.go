// Package deadletter holds what spool does with transactions that can never
// succeed: the poison set of rows they left unwritten (consulted by the
// applier's gate and by the settler, so that what depends on a failed
// transaction fails with a reason naming it), and the queue people use to
// list, retry (as they were, or corrected) and drop them. The dead letters
// themselves live in the database, written in the same database
// transaction as the batch that failed them.
package deadletter
