// Package txlogtest is the conformance suite of txlog.Log: every backend
// (filelog on local disk, redislog in a Redis stream) runs the same tests,
// so that the applier and the API can rely on one behaviour.
//
// A backend's test calls Run with a Harness:
//
//	func TestConformance(t *testing.T) {
//		txlogtest.Run(t, txlogtest.Harness{
//			New: func(t testing.TB) func() (txlog.Log, error) {
//				dir := t.TempDir()
//				return func() (txlog.Log, error) { return filelog.Open(dir, filelog.Config{}, nil) }
//			},
//			ComparePos: comparePos,
//		})
//	}
//
// Harness.New prepares one fresh, empty log (a directory, a stream key) and
// returns a function that opens it. The suite opens the log through it at
// the start of a test and again after closing it, to check what survives a
// reopen: appended entries, entries claimed but not acknowledged (which must
// come again), and acknowledged entries (which must not). open must
// therefore reach the same log every time. The suite never has two logs
// from one New open at once, and it closes every log it opens; New may
// register its own cleanups with t.Cleanup.
//
// What the suite checks:
//
//   - Append returns the entry of the transaction, with a position that is
//     distinct from every other (and increasing, if ComparePos is given).
//   - Claim returns entries in append order, at most max of them, at once
//     when there are some; with none it blocks until an Append, until its
//     context is done, or until the log is closed.
//   - Concurrent appends from many goroutines are all delivered exactly
//     once, each goroutine's in its own order.
//   - Ack, then reopen: only the entries not acknowledged come again, and
//     Pending lists exactly them, in order; positions are not reused.
//   - Stats.Depth follows appends and acks.
//   - Close makes every later call fail with txlog.ErrClosed, unblocks a
//     waiting Claim, and is safe to call twice.
//   - A transaction comes back intact from Claim, Pending and a reopen: its
//     id, created_at, retry_of and operations, with values of every JSON
//     type. Numbers must keep every digit (decode with
//     json.Decoder.UseNumber or an equivalent): an int64 beyond 2^53 is
//     checked.
//
// Backend-specific rules (how positions look, what Ack does with an entry
// out of order, crash recovery) are tested by the backend itself.
//
// Tests run in parallel (t.Parallel), each on its own log, and wait for
// asynchronous outcomes with channels and deadlines, never with sleeps.
package txlogtest
