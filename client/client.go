package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// IdempotencyKeyHeader is the header every write carries.
const IdempotencyKeyHeader = "Idempotency-Key"

// Retry defaults.
const (
	// DefaultMaxRetries is how many times a request answered 429 or 503 is
	// sent again: with spool's Retry-After of 1 s, several seconds of
	// backpressure, about what a log over its high mark takes to drain
	// below its low mark.
	DefaultMaxRetries = 8
	// DefaultBackoff is the first wait when the answer names none; it
	// doubles with each retry up to MaxBackoff.
	DefaultBackoff = 100 * time.Millisecond
	// MaxBackoff caps the wait between two attempts without Retry-After.
	MaxBackoff = 5 * time.Second
)

// Client calls one spool. It is safe for concurrent use.
type Client struct {
	base       *url.URL
	http       *http.Client
	token      string
	maxRetries int
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends token (a secret of spool's --tokens, or a JWT) as
// Authorization: Bearer on every request.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient sends requests through h (its transport, TLS
// configuration, timeout). The default is a client without a timeout:
// bound each call with its context.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithMaxRetries sets how many times a request answered 429 or 503 is
// sent again (0: never); DefaultMaxRetries otherwise.
func WithMaxRetries(n int) Option { return func(c *Client) { c.maxRetries = n } }

// New returns a client of the spool at baseURL (http://host:port).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("spool client: base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("spool client: base URL %q: want http://host:port or https://host:port", baseURL)
	}
	c := &Client{base: u, http: &http.Client{}, maxRetries: DefaultMaxRetries}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

type idempotencyKey struct{}

// WithIdempotencyKey returns a context whose write sends key as its
// Idempotency-Key instead of a new random one: keep the key of a write
// to send it again after your program restarts.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKey{}, key)
}

// newKey returns a random (version 4) UUID.
func newKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// call sends method path (query included) with body marshalled as JSON
// (nil: none), retrying 429 and 503, and decodes a 2xx answer into out
// (nil: discard). Another status is a *Error.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body, out any) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return fmt.Errorf("spool client: %s %s: encode body: %w", method, path, err)
		}
	}
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	write := method != http.MethodGet
	key := ""
	if write {
		key, _ = ctx.Value(idempotencyKey{}).(string)
		if key == "" {
			key = newKey()
		}
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("spool client: %s %s: %w", method, path, err)
		}
		if raw == nil {
			req.Body = http.NoBody
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json")
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if write {
			req.Header.Set(IdempotencyKeyHeader, key)
		}
		res, err := c.http.Do(req)
		if err != nil {
			return fmt.Errorf("spool client: %s %s: %w", method, path, err)
		}
		answer, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return fmt.Errorf("spool client: %s %s: read answer: %w", method, path, err)
		}
		if res.StatusCode < 300 {
			if out == nil {
				return nil
			}
			dec := json.NewDecoder(bytes.NewReader(answer))
			dec.UseNumber()
			if err := dec.Decode(out); err != nil {
				return fmt.Errorf("spool client: %s %s: decode answer: %w", method, path, err)
			}
			return nil
		}
		e := newError(method, path, res, answer)
		if !retryable(res.StatusCode) || attempt >= c.maxRetries {
			return e
		}
		wait := c.backoff(attempt, e.RetryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return e // the context would end before the retry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("spool client: %s %s: %w (last answer: %w)", method, path, context.Cause(ctx), e)
		case <-t.C:
		}
	}
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// backoff is the wait before retry attempt+1: Retry-After plus up to half
// as much again, or a jittered exponential backoff without one.
func (c *Client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return retryAfter + rand.N(retryAfter/2+1)
	}
	d := min(DefaultBackoff<<min(attempt, 16), MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// parseRetryAfter reads a Retry-After of seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
