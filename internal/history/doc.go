// Package history records what the clients of a fault campaign did against
// spool and checks it, in the manner of Jepsen's Elle: it holds every
// acknowledged, refused and unknown write, every read and every status read
// to what PostgreSQL finally applied, and reports each anomaly it finds.
//
// # The workload
//
// The checker relies on the workload keeping these rules; where a recorded
// history breaks one, Check reports KindInvalidHistory.
//
//   - Each row belongs to one client, the only one that writes it. The
//     harness chooses row ids, so every write names its row when invoked.
//   - Each insert or update sets the row's counter to a value above every
//     value the client wrote to the row before; the insert comes first, a
//     delete last, and nothing is written to the row after its delete or
//     after a write whose outcome is unknown.
//   - A request carries one or more writes to the client's rows and ends
//     OK (2xx: acknowledged, with a transaction id), Failed (4xx: refused
//     and never applied) or Unknown (transport error, timeout or 5xx: it
//     may be applied once, or not at all). A request never completed counts
//     as Unknown.
//   - A client reads its own rows and the status of its acknowledged
//     transactions, and records its status reads in the order it made them.
//
// # Recording
//
// A History is safe for concurrent use; each writer records through its
// Client, and the handles Invoke and InvokeRead return record how the
// operation ended and when:
//
//	h := history.New()
//	c := h.Client("w3")
//	q := c.Invoke(history.Write{Row: id, Op: history.Insert, Counter: 1})
//	q.OK(txID) // or q.Failed(err), q.Unknown(err)
//	r := c.InvokeRead(id, "api-1")
//	r.Observed(1, true) // or r.Unknown(err)
//	c.Status(txID, history.StateApplied)
//
// # Checking
//
// Once the faults have stopped and the log has drained, the harness reads
// the final state (the audit table an AFTER trigger filled, the table
// itself, spool_applied and the dead letters) into a Final and calls
// Check. It matches each applied change to the write that sent it (an
// insert or update by its row and counter, which are unique, a delete by
// its row) and reports, each as a Kind:
//
//   - lost: an acknowledged write never applied, an acknowledged
//     transaction missing from spool_applied;
//   - duplicated: a write applied more than once;
//   - reordered: a row's writes applied in another order than issued;
//   - phantom and refused-applied: an applied change no client sent, or
//     whose request was refused;
//   - final-state: the table disagrees with the row's last applied change,
//     or with its last acknowledged write when nothing of unknown outcome
//     came after it (and nothing else is wrong with the row);
//   - stale-read: a read older than a write its client had seen
//     acknowledged, or than what a read of the same client that answered
//     before it was sent observed; a row missing though the client knew it
//     existed and no delete had been sent; a value no client sent, sent
//     only later, or refused. A write of unknown outcome may be seen: it is
//     newer;
//   - state-regression and bad-status: a client seeing a transaction's
//     state go backwards (queued, applied, replicated), or failed or not
//     found for an acknowledged transaction;
//   - dead-lettered: any dead letter, as the workload sends only valid
//     writes;
//   - atomicity: a transaction of several writes applied in part.
//
// A write of unknown outcome may be applied once or not at all; applied
// twice it is duplicated. The report is sorted, so the same history and
// final state give the same report.
package history
