package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/spoolgw/spool/internal/events"
)

// evMsg is one live event as a client got it.
type evMsg struct {
	Type   string
	Cursor string
	Data   map[string]any
}

// cursor parses the message's cursor.
func (m evMsg) cursor(t testing.TB) events.Cursor {
	t.Helper()
	c, err := events.ParseCursor(m.Cursor)
	if err != nil {
		t.Fatalf("message %v: %v", m, err)
	}
	return c
}

// evClient is a subscriber over SSE or WebSocket, reading in the
// background into msgs.
type evClient struct {
	msgs       chan evMsg
	heartbeats atomic.Int64
	cancel     context.CancelFunc
	done       chan struct{}
	last       string // cursor of the last message next returned
}

// openSSE subscribes with GET url over SSE, resuming after lastID if set.
func openSSE(t testing.TB, url, lastID string) *evClient {
	t.Helper()
	c, status := trySSE(t, url, lastID)
	if c == nil {
		t.Fatalf("GET %s: %d", url, status)
	}
	return c
}

// clientBuffer is how many messages a test client holds unread.
const clientBuffer = 100_000

// trySSE subscribes, or returns the status of a refusal.
func trySSE(t testing.TB, url, lastID string) (*evClient, int) {
	t.Helper()
	return trySSEBuffer(t, url, lastID, clientBuffer)
}

// trySSEBuffer is trySSE holding up to buffer messages unread.
func trySSEBuffer(t testing.TB, url, lastID string, buffer int) (*evClient, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		cancel()
		return nil, res.StatusCode
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	c := &evClient{msgs: make(chan evMsg, buffer), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.msgs)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 4096), 1<<24)
		var m evMsg
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if m.Type != "" {
					c.msgs <- m
				}
				m = evMsg{}
			case strings.HasPrefix(line, ":"):
				c.heartbeats.Add(1)
			case strings.HasPrefix(line, "event: "):
				m.Type = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				m.Cursor = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m.Data); err != nil {
					panic(fmt.Sprintf("event data %q: %v", line, err))
				}
			}
		}
	}()
	return c, 0
}

// openWS subscribes with GET url over a WebSocket.
func openWS(t testing.TB, url string) *evClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http"), nil)
	if err != nil {
		cancel()
		t.Fatalf("dial %s: %v", url, err)
	}
	if res.Body != nil {
		res.Body.Close()
	}
	conn.SetReadLimit(1 << 24)
	c := &evClient{msgs: make(chan evMsg, clientBuffer), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.msgs)
		defer conn.CloseNow()
		for {
			typ, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			if typ != websocket.MessageText {
				panic("binary websocket message")
			}
			var m evMsg
			if err := json.Unmarshal(data, &m.Data); err != nil {
				panic(fmt.Sprintf("websocket message %q: %v", data, err))
			}
			m.Type, _ = m.Data["type"].(string)
			m.Cursor, _ = m.Data["cursor"].(string)
			c.msgs <- m
		}
	}()
	return c
}

// next returns the next message, failing t after within.
func (c *evClient) next(t testing.TB, within time.Duration) evMsg {
	t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			t.Fatalf("stream ended; last cursor %s", c.last)
		}
		c.last = m.Cursor
		return m
	case <-time.After(within):
		t.Fatalf("no message in %v; last cursor %s", within, c.last)
	}
	return evMsg{}
}

// nextOf returns the next message of type typ, skipping others.
func (c *evClient) nextOf(t testing.TB, typ string, within time.Duration) evMsg {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m := c.next(t, time.Until(deadline))
		if m.Type == typ {
			return m
		}
	}
}

// close ends the subscription and waits for its reader.
func (c *evClient) close() {
	c.cancel()
	for range c.msgs {
	}
	<-c.done
}
