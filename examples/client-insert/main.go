// Command client-insert writes an observation through spool's Go client,
// waits until the database has it, and reads it back.
//
//	go run ./examples/client-insert --url http://127.0.0.1:8080   (token: SPOOL_TOKEN)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spoolgw/spool/client"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "the spool's `URL`")
	flag.Parse()
	if err := run(*base, os.Getenv("SPOOL_TOKEN")); err != nil {
		fmt.Fprintln(os.Stderr, "client-insert:", err)
		os.Exit(1)
	}
}

func run(base, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(base, client.WithToken(token))
	if err != nil {
		return err
	}
	// Answered once the write is durable in spool's log.
	rc, err := c.Insert(ctx, "observations", client.Values{"target": "M31", "exposure_s": 30})
	if err != nil {
		return err
	}
	fmt.Printf("inserted observation %s (transaction %s, %s)\n", rc.ID, rc.TransactionID, rc.State)
	// Readable at once, from the overlay if the database lacks it yet.
	row, err := c.Get(ctx, "observations", rc.ID)
	if err != nil {
		return err
	}
	fmt.Printf("read back: target %v, status %v\n", row["target"], row["status"])
	st, err := c.Wait(ctx, rc.TransactionID, client.Applied)
	if err != nil {
		return err
	}
	fmt.Printf("applied at %s (state %s)\n", st.AppliedAt.Format(time.RFC3339Nano), st.State)
	return nil
}
