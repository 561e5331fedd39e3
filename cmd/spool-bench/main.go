// Command spool-bench measures a spool against its ceilings: it starts
// spool (the binary --spool names) on the embedded default or, with
// --servers, on throwaway redis-server and PostgreSQL with a streaming
// replica, drives it with a built-in load generator and prints each figure
// beside its ceiling or baseline measured in the same run. It is its own
// command so that the spool binary holds no code that starts servers.
//
// Usage:
//
//	spool-bench [scenario…] [flags]   (spool-bench --help for both)
//	spool-bench report [--into FILE] [--headline] LABEL=FILE.jsonl …
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := os.Args[1:]
	run := func() error { return benchCommand(ctx, args, os.Stdout, os.Stderr) }
	if len(args) > 0 && args[0] == "report" {
		run = func() error { return reportCommand(args[1:], os.Stdout, os.Stderr) }
	}
	if err := run(); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "spool-bench:", err)
		}
		os.Exit(2)
	}
}
