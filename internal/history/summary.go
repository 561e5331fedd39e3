package history

import (
	"fmt"
	"strings"
)

// Counts counts operations by how they ended. Pending ones never completed.
type Counts struct {
	OK, Failed, Unknown, Pending int
}

// Total returns the number of operations counted.
func (n Counts) Total() int { return n.OK + n.Failed + n.Unknown + n.Pending }

func (n *Counts) add(o outcome) {
	switch o {
	case outcomeOK:
		n.OK++
	case outcomeFailed:
		n.Failed++
	case outcomeUnknown:
		n.Unknown++
	default:
		n.Pending++
	}
}

// String formats the counts as "12 (10 ok, 1 failed, 1 unknown)", leaving
// out the outcomes none had.
func (n Counts) String() string {
	var parts []string
	for _, p := range []struct {
		n    int
		name string
	}{{n.OK, "ok"}, {n.Failed, "failed"}, {n.Unknown, "unknown"}, {n.Pending, "pending"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", n.Total(), strings.Join(parts, ", "))
}

// Summary counts what the history and the final state hold.
type Summary struct {
	Clients int
	Rows    int    // rows written
	Txns    Counts // requests, by outcome
	Writes  Counts // row writes, by their request's outcome
	Reads   Counts // row reads: OK answered, Unknown did not
	// StatusReads counts transaction status reads.
	StatusReads int
	// Applied counts the changes in the applied sequences.
	Applied     int
	DeadLetters int
}

// String formats the summary on one line.
func (s Summary) String() string {
	return fmt.Sprintf("clients %d, rows %d; txns %s; writes %s; reads %s; status reads %d; applied changes %d; dead letters %d",
		s.Clients, s.Rows, s.Txns, s.Writes, s.Reads, s.StatusReads, s.Applied, s.DeadLetters)
}

func (c *checker) summary() Summary {
	s := Summary{
		Clients:     c.clients,
		StatusReads: len(c.statuses),
		DeadLetters: len(c.final.DeadLetters),
	}
	for _, r := range c.rows {
		if len(r.writes) > 0 {
			s.Rows++
		}
	}
	for _, q := range c.requests {
		s.Txns.add(q.outcome)
		for range q.writes {
			s.Writes.add(q.outcome)
		}
	}
	for _, d := range c.reads {
		s.Reads.add(d.outcome)
	}
	for _, a := range c.final.Applied {
		s.Applied += len(a)
	}
	return s
}
