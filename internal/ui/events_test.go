package ui_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Where GET /v1/events is served, the table page follows it: the
// snapshot's rows, then a row message's row, marked buffered by its
// state. The stream here is scripted by the test to the route's spec
// (issue 22), one message at a time.
func TestTablePageFollowsEvents(t *testing.T) {
	const a, b = "0190b5a0-0000-7000-8000-00000000000a", "0190b5a0-0000-7000-8000-00000000000b"
	next := make(chan string)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	events := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("table") != "observations" {
			http.Error(w, "table", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: 1\nevent: snapshot\ndata: {\"table\":\"observations\",\"rows\":[{\"id\":%q,\"target\":\"from the snapshot\"}]}\n\n", a)
		w.(http.Flusher).Flush()
		for {
			select {
			case msg := <-next:
				fmt.Fprint(w, msg)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			case <-done:
				return
			}
		}
	})
	send := func(msg string) {
		t.Helper()
		select {
		case next <- msg:
		case <-time.After(within):
			t.Fatalf("the page did not keep the events stream open for %v", within)
		}
	}
	e := setupWith(t, nil, events)
	ctx := tab(t)
	run(t, ctx, "open the table page",
		chromedp.Navigate(e.srv.URL+"/ui/tables/observations"),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#rows tr[data-key=%q]`, a))))
	untilText(t, ctx, "#live-mode", "live: events")
	send(fmt.Sprintf("id: 2\nevent: row\ndata: {\"table\":\"observations\",\"id\":%q,\"op\":\"insert\",\"row\":{\"id\":%q,\"target\":\"from a row message\"},\"transaction_id\":%q,\"state\":\"queued\"}\n\n", b, b, b))
	run(t, ctx, "see the row message's row, buffered",
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#rows tr.buffered[data-key=%q]`, b))))
	send(fmt.Sprintf("id: 3\nevent: row\ndata: {\"table\":\"observations\",\"id\":%q,\"op\":\"delete\",\"row\":null,\"transaction_id\":%q,\"state\":\"queued\"}\n\n", a, b))
	run(t, ctx, "see the deleted row go",
		chromedp.WaitNotPresent(chromedp.CSS(fmt.Sprintf(`#rows tr[data-key=%q]`, a))))
}
