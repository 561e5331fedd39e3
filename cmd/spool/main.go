// Command spool is a write-buffering gateway: writers POST transactions,
// spool makes them durable in its log, answers at once, and drains them into
// the database in batches, merging still-buffered writes into reads.
//
// Usage:
//
//	spool serve [flags]    run the gateway (spool serve --help for flags)
//	spool log check        scan the local log for torn tails and corruption
//	spool dlq list|show|retry|drop   work with a running spool's dead letters
//	spool token --name N --scopes S  make a token's secret and its tokens file entry
//	spool status [--watch] [--json]  a running spool's state; exit 1 when not ready
//
// Every flag has a SPOOL_* environment equivalent: --data-dir is
// SPOOL_DATA_DIR. A flag on the command line wins over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, errNotReady) {
			os.Exit(1) // spool status: answered, not ready (a health check)
		}
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "spool:", err)
		}
		os.Exit(2)
	}
}

const usage = `spool: a write-buffering gateway in front of a relational database.

Usage:
  spool serve [flags]   run the gateway (see spool serve --help)
  spool log check       scan the local log for torn tails and corruption
  spool dlq …           list, show, retry or drop dead letters of a running spool
  spool token …         make an API token: a secret and its --tokens entry
  spool status          a running spool's backlog, rates, applier, dead letters

Every flag has an environment equivalent: --data-dir is SPOOL_DATA_DIR.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "log":
		return logCommand(args[1:], stdout, stderr)
	case "dlq":
		return dlqCommand(ctx, args[1:], stdout, stderr)
	case "token":
		return tokenCommand(args[1:], stdout, stderr)
	case "status":
		return statusCommand(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return "SPOOL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parse applies SPOOL_* environment variables, then the command line.
func parse(fs *flag.FlagSet, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}
