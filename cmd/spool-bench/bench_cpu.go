package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 on every architecture for what it shows to users.
const userHZ = 100

// cpuGroups names the processes whose CPU time a measurement adds up:
// each group is its root processes and all their descendants (PostgreSQL's
// backends, walsender and startup process are the postmasters' children).
// A process under two groups' roots counts in the nearer one.
type cpuGroups map[string][]int

// cpuTimes is the CPU time (user and system) each group has used so far.
type cpuTimes map[string]time.Duration

// procTable is the CPU time and the parent of every process, read from
// /proc at one moment.
type procTable map[int]procStat

type procStat struct {
	ppid int
	cpu  time.Duration
}

// readProcs reads every process from /proc. It returns nil where there is
// no /proc (not Linux): the figures are left out. A process that exited
// counts in its parent's CPU time once the parent has waited for it (as a
// postmaster does for its backends).
func readProcs() (procTable, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, nil
	}
	procs := make(procTable, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		ppid, ticks, err := parseStat(stat)
		if err != nil {
			return nil, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
		}
		procs[pid] = procStat{ppid: ppid, cpu: time.Duration(ticks) * time.Second / userHZ}
	}
	return procs, nil
}

// byGroup adds up the CPU time of each group's processes.
func (t procTable) byGroup(groups cpuGroups) cpuTimes {
	rootOf := make(map[int]string)
	for name, pids := range groups {
		for _, pid := range pids {
			rootOf[pid] = name
		}
	}
	out := make(cpuTimes, len(groups))
	for pid, p := range t {
		// Walk up to the nearest root; a process under none is not ours.
		for up, depth := pid, 0; up > 1 && depth < 64; depth++ {
			if name, ok := rootOf[up]; ok {
				out[name] += p.cpu
				break
			}
			up = t[up].ppid
		}
	}
	return out
}

// parseStat returns the parent's pid and the user and system CPU ticks
// from the contents of /proc/<pid>/stat: the process's own and those of
// its children it has waited for, so that a descendant that exited counts
// once, in its parent's. The command name, in
// parentheses, may hold spaces and parentheses itself, so the fields are
// read after its last ')'.
func parseStat(stat []byte) (ppid int, ticks int64, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("no command name")
	}
	// After the name: state ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime …
	f := bytes.Fields(stat[i+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("%d fields after the command name", len(f))
	}
	if ppid, err = strconv.Atoi(string(f[1])); err != nil {
		return 0, 0, fmt.Errorf("ppid: %w", err)
	}
	for _, s := range f[11:15] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("cpu ticks: %w", err)
		}
		ticks += n
	}
	return ppid, ticks, nil
}

// cpuMeter measures the CPU time groups of processes use over a span. It
// reads every process when the span begins and learns the groups when it
// ends, so a process started within the span (an applier the bench starts
// once the span has begun) counts from zero.
type cpuMeter struct {
	start procTable
	began time.Time
	err   error
}

// begin starts the span.
func (m *cpuMeter) begin() {
	m.began = time.Now()
	m.start, m.err = readProcs()
}

// cpuSpan is the CPU time each group used over a span, nil where it
// cannot be read (not Linux), and the span's length.
type cpuSpan struct {
	used cpuTimes
	wall time.Duration
}

// end ends the span and returns what groups used in it.
func (m *cpuMeter) end(groups cpuGroups) (cpuSpan, error) {
	s := cpuSpan{wall: time.Since(m.began)}
	if m.err != nil || m.start == nil {
		return s, m.err
	}
	now, err := readProcs()
	if err != nil || now == nil {
		return s, err
	}
	before, after := m.start.byGroup(groups), now.byGroup(groups)
	s.used = make(cpuTimes, len(after))
	for name, t := range after {
		s.used[name] = t - before[name]
	}
	return s, nil
}

// cpuFigures prints, over span s of rows, the CPU time per row of each
// group in order (if more than one) and of them all, the last against a
// baseline's (named baseName, worth base; none where base is 0), and how
// many of the machine's cores they kept busy meanwhile. It returns the
// CPU time per row of them all.
func (b *bench) cpuFigures(scenario, what string, rows int, s cpuSpan, order []string, baseName string, base float64) float64 {
	var all time.Duration
	for _, name := range order {
		all += s.used[name]
		if len(order) > 1 {
			b.out.print(figure{Scenario: scenario, Figure: fmt.Sprintf("CPU per row %s, by %s", what, name), Value: perRow(s.used[name], rows), Unit: "µs"})
		}
	}
	f := figure{Scenario: scenario, Figure: "CPU per row " + what, Value: perRow(all, rows), Unit: "µs"}
	if base > 0 {
		f.Baseline, f.BaselineValue = baseName, base
	}
	b.out.print(f)
	if s.wall > 0 {
		b.out.print(figure{Scenario: scenario, Figure: fmt.Sprintf("cores busy %s, of %d", what, runtime.NumCPU()), Value: all.Seconds() / s.wall.Seconds()})
	}
	return f.Value
}

// perRow is d per row in microseconds.
func perRow(d time.Duration, rows int) float64 {
	return float64(d.Microseconds()) / float64(rows)
}

// The groups of processes a bench deployment runs.
const (
	cpuSpool    = "spool"         // spool serve, the one process
	cpuAPI      = "spool api"     // spool serve --role api (it answers the bench's polls too)
	cpuApplier  = "spool applier" // spool serve --role applier
	cpuRedis    = "redis"         // redis-server
	cpuPostgres = "postgres"      // the primary and the replica, with their backends
	cpuBench    = "bench"         // this process: load, polls, the raw baselines
)

// order lists the groups of the system under test, the bench left out, in
// a fixed order.
func (g cpuGroups) order() []string {
	var out []string
	for _, name := range []string{cpuSpool, cpuAPI, cpuApplier, cpuRedis, cpuPostgres} {
		if len(g[name]) > 0 {
			out = append(out, name)
		}
	}
	return out
}
