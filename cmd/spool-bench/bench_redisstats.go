package main

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// redisTop is how many of Redis's commands the figures name.
const redisTop = 8

// redisCommands is Redis's own count of the calls and the time each command
// took (INFO commandstats), by command; a command a script calls counts
// both in its own line and in the script's (evalsha).
type redisCommands map[string]redisCommand

type redisCommand struct {
	calls int64
	usec  int64
}

// resetRedisStats zeroes Redis's command counts (CONFIG RESETSTAT).
func (e *benchEnv) resetRedisStats(ctx context.Context) error {
	return e.redisDo(ctx, "CONFIG", "RESETSTAT")
}

// redisStats reads Redis's command counts.
func (e *benchEnv) redisStats(ctx context.Context) (redisCommands, error) {
	c, err := e.redisClient("commandstats")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("bench: INFO commandstats: %w", err)
	}
	return parseCommandStats(info)
}

// parseCommandStats reads INFO commandstats: lines such as
// cmdstat_xack:calls=4,usec=20,usec_per_call=5.00,rejected_calls=0,failed_calls=0.
func parseCommandStats(info string) (redisCommands, error) {
	out := redisCommands{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, fields, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var c redisCommand
		for f := range strings.SplitSeq(fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			var err error
			switch k {
			case "calls":
				c.calls, err = strconv.ParseInt(v, 10, 64)
			case "usec":
				c.usec, err = strconv.ParseInt(v, 10, 64)
			}
			if err != nil {
				return nil, fmt.Errorf("bench: INFO commandstats: %q: %w", sc.Text(), err)
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = c
	}
	return out, sc.Err()
}

// redisFigures prints the time Redis spent per row in its costliest
// commands (up to top), with their calls per row. A command a script calls
// counts in its own line and in the script's (evalsha) too; Redis's whole
// CPU time is among the CPU figures.
func (b *bench) redisFigures(scenario, what string, rows int, s redisCommands, top int) {
	names := make([]string, 0, len(s))
	for name := range s {
		names = append(names, name)
	}
	slices.SortFunc(names, func(x, y string) int { return int(s[y].usec - s[x].usec) })
	for _, name := range names[:min(top, len(names))] {
		c := s[name]
		b.out.print(figure{Scenario: scenario, Figure: fmt.Sprintf("Redis time per row %s, %s (%.2g calls per row)", what, name, float64(c.calls)/float64(rows)), Value: float64(c.usec) / float64(rows), Unit: "µs"})
	}
}
