// Command client-watch follows a spool's backlog through the Go client:
// every few seconds the log's depth, the rate it drains at, and new dead
// letters, until interrupted. Needs a token with the admin scope
// (SPOOL_TOKEN) when spool authenticates.
//
//	go run ./examples/client-watch --url http://127.0.0.1:8080 --every 2s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/spoolgw/spool/client"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "the spool's `URL`")
	every := flag.Duration("every", 2*time.Second, "how often to look")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := watch(ctx, *base, os.Getenv("SPOOL_TOKEN"), *every); err != nil {
		fmt.Fprintln(os.Stderr, "client-watch:", err)
		os.Exit(1)
	}
}

func watch(ctx context.Context, base, token string, every time.Duration) error {
	c, err := client.New(base, client.WithToken(token))
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("%s  depth %d (%d bytes)  applied %.1f/s  dead letters since start %d\n",
			time.Now().Format(time.TimeOnly), s.Log.Depth, s.Log.Bytes, s.AppliedPerSecond, s.Failed)
		page, err := c.DeadLetters(ctx, client.DeadLetterFilter{Since: time.Now().Add(-time.Hour)})
		if err != nil {
			return err
		}
		for _, dl := range page.DeadLetters {
			if !seen[dl.Transaction.ID] {
				seen[dl.Transaction.ID] = true
				fmt.Printf("  dead letter %s: %s (%s)\n", dl.Transaction.ID, dl.Error, dl.Code)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
