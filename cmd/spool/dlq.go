package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const dlqUsage = `Usage:
  spool dlq list  [--table T] [--code C] [--since TIME] [--limit N] [--all]
  spool dlq show  ID
  spool dlq retry ID [--file OPERATIONS.json]   retry, or edit and retry
  spool dlq retry --table T [--code C] [--since TIME]   retry every match
  spool dlq drop  ID

Talks to a running spool (--url, default http://127.0.0.1:8080; SPOOL_URL)
with the secret or JWT of --token (SPOOL_TOKEN), which needs the admin
scope; its principal is recorded as who retried or dropped.
`

// dlqCommand runs `spool dlq …` against a running server's API.
func dlqCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return fmt.Errorf("spool dlq: want list, show, retry or drop")
	}
	verb := args[0]
	fs := flag.NewFlagSet("spool dlq "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dlqUsage); fs.PrintDefaults() }
	base := fs.String("url", "http://127.0.0.1:8080", "`URL` of the running spool")
	table := fs.String("table", "", "only dead letters with an operation on this `table`")
	code := fs.String("code", "", "only dead letters whose error code starts with `code` (e.g. 23, SQLITE_CONSTRAINT)")
	since := fs.String("since", "", "only dead letters that last failed at or after this RFC 3339 `time`")
	limit := fs.Int("limit", 0, "page size of list")
	all := fs.Bool("all", false, "list retried and dropped ones too")
	file := fs.String("file", "", "JSON `file` of corrected operations for retry ({\"operations\":[…]})")
	token := fs.String("token", "", "`secret` or JWT sent as Authorization: Bearer (default: none; SPOOL_TOKEN)")
	// Flags may come before or after the id.
	var positional []string
	rest := args[1:]
	for {
		if err := parse(fs, rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	filter := url.Values{}
	for k, v := range map[string]string{"table": *table, "code": *code, "since": *since} {
		if v != "" {
			filter.Set(k, v)
		}
	}
	c := &client{base: strings.TrimRight(*base, "/"), http: &http.Client{Timeout: 30 * time.Second}}
	id := func() (string, error) {
		if len(positional) != 1 {
			return "", fmt.Errorf("spool dlq %s: want one dead letter id", verb)
		}
		return positional[0], nil
	}
	var (
		method, path string
		body         []byte
		header       = http.Header{}
	)
	if *token != "" {
		header.Set("Authorization", "Bearer "+*token)
	}
	switch verb {
	case "list":
		if *limit > 0 {
			filter.Set("limit", fmt.Sprint(*limit))
		}
		if *all {
			filter.Set("all", "true")
		}
		method, path = http.MethodGet, "/v1/dlq?"+filter.Encode()
	case "show":
		i, err := id()
		if err != nil {
			return err
		}
		method, path = http.MethodGet, "/v1/dlq/"+i
	case "retry":
		method = http.MethodPost
		if len(positional) == 0 {
			if len(filter) == 0 {
				return fmt.Errorf("spool dlq retry: name an id, or a filter (--table, --code, --since) to retry every match")
			}
			path = "/v1/dlq/retry?" + filter.Encode()
			break
		}
		i, err := id()
		if err != nil {
			return err
		}
		path = "/v1/dlq/" + i + "/retry"
		if *file != "" {
			b, err := os.ReadFile(*file)
			if err != nil {
				return fmt.Errorf("--file: %w", err)
			}
			body = b
			header.Set("Content-Type", "application/json")
		}
	case "drop":
		i, err := id()
		if err != nil {
			return err
		}
		method, path = http.MethodDelete, "/v1/dlq/"+i
	default:
		fmt.Fprint(stderr, dlqUsage)
		return fmt.Errorf("spool dlq: unknown subcommand %q", verb)
	}
	return c.do(ctx, method, path, body, header, stdout)
}

// client calls a running spool's API.
type client struct {
	base string
	http *http.Client
}

// do sends a request and prints the JSON answer indented; an error status
// becomes an error carrying the server's message.
func (c *client) do(ctx context.Context, method, path string, body []byte, header http.Header, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", res.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", res.Status, raw)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, raw, "", "  ") != nil {
		pretty.Reset()
		pretty.Write(raw)
	}
	_, err = fmt.Fprintln(out, strings.TrimSpace(pretty.String()))
	return err
}
