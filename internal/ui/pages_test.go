package ui_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// A write made through the API appears on the table page at once,
// marked buffered while the applier is stopped, and unmarked once it is
// applied; the overview's counters move without a reload.
func TestWriteAppearsLive(t *testing.T) {
	e := setup(t, nil)
	ctx := tab(t)

	run(t, ctx, "open the overview", chromedp.Navigate(e.srv.URL+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#log-depth")))
	untilText(t, ctx, "#count-queued", "0")
	r := e.call(201, "", "POST", "/v1/tables/observations", `{"target":"M31","exposure_s":30}`)
	id := r["id"].(string)
	untilText(t, ctx, "#count-queued", "1") // the overview moves by itself
	untilText(t, ctx, "#log-depth", "1")

	// Deep link: the table page's own URL, loaded afresh.
	run(t, ctx, "open the table page", chromedp.Navigate(e.srv.URL+"/ui/tables/observations"))
	row := fmt.Sprintf(`#rows tr[data-key=%q]`, id)
	run(t, ctx, "see the buffered row", chromedp.WaitVisible(chromedp.CSS(row+".buffered")))
	if got := text(t, ctx, row); !strings.Contains(got, "M31") || !strings.Contains(got, "buffered") {
		t.Fatalf("the row reads %q; want M31, marked buffered", got)
	}
	// A second write while the page is open appears without a reload.
	r2 := e.call(201, "", "POST", "/v1/tables/observations", `{"target":"M42"}`)
	run(t, ctx, "see the second write", chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#rows tr[data-key=%q]`, r2["id"]))))

	e.startApplier()
	run(t, ctx, "see the row applied", chromedp.WaitVisible(chromedp.CSS(row+":not(.buffered)")))
	screenshot(t, ctx, "table")

	// A filter from the form narrows the rows, and the URL carries it.
	run(t, ctx, "filter target = M42",
		chromedp.Click(chromedp.CSS("#add-filter")),
		chromedp.SetValue(chromedp.CSS("#fc-0"), "target"),
		chromedp.SetValue(chromedp.CSS("#fv-0"), "M42"),
		chromedp.Click(chromedp.CSS("#apply-filter")),
		chromedp.WaitNotPresent(chromedp.CSS(row)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#rows tr[data-key=%q]`, r2["id"]))))
	if u := eval[string](t, ctx, "location.search"); u != "?target=eq.M42" {
		t.Fatalf("the filtered page's query is %q; want ?target=eq.M42", u)
	}

	run(t, ctx, "back to the overview", chromedp.Click(chromedp.CSS(`nav a[href="/ui/"]`)), chromedp.WaitVisible(chromedp.CSS("#count-applied")))
	untilText(t, ctx, "#count-applied", "2")
	for i := range 4 { // the charts move: a write a poll or so apart
		e.call(201, "", "POST", "/v1/tables/observations", fmt.Sprintf(`{"target":"NGC %d"}`, i))
		untilText(t, ctx, "#count-applied", strconv.Itoa(3+i))
	}
	untilText(t, ctx, "#log-depth", "0")
	untilText(t, ctx, "#readiness", "ready")
	untilText(t, ctx, "#applier-state", "applying")
	if n := eval[int](t, ctx, `document.querySelectorAll('svg.chart path.line').length`); n != 2 {
		t.Fatalf("%d charts drawn; want 2", n)
	}
	if p50 := text(t, ctx, "#lat-p50"); p50 == "—" {
		t.Fatalf("ack → applied p50 not shown")
	}
	screenshot(t, ctx, "overview")
	run(t, ctx, "a phone's width", chromedp.EmulateViewport(390, 844))
	screenshot(t, ctx, "overview-phone")
	if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 400 {
		t.Errorf("the overview is %d px wide on a 390 px phone; want no horizontal scroll", w)
	}
}

// A transaction the database refuses (a duplicate key) is on the
// dead-letters page with the database's error; an invalid edit is
// refused on the page; a corrected one is retried from the page and
// applies; the transaction pages show both timelines.
func TestDeadLetterEditedAndRetried(t *testing.T) {
	e := setup(t, nil)
	e.startApplier()
	id := e.poison("")
	ctx := tab(t)

	run(t, ctx, "open the dead letters of instruments",
		chromedp.Navigate(e.srv.URL+"/ui/dead-letters?table=instruments"),
		chromedp.WaitVisible(chromedp.CSS("#dl-"+id)))
	if msg := text(t, ctx, "#dl-"+id+" .dl-error"); !strings.Contains(msg, "UNIQUE") {
		t.Fatalf("the dead letter's error reads %q; want the database's UNIQUE violation", msg)
	}
	if code := text(t, ctx, "#dl-"+id+" .code"); !strings.HasPrefix(code, "SQLITE_CONSTRAINT") {
		t.Fatalf("the code reads %q", code)
	}
	run(t, ctx, "the filter form shows the table", chromedp.WaitVisible(chromedp.CSS("#retry-all")))
	screenshot(t, ctx, "dead-letters")

	ops := "#ops-" + id
	edited := get(t, ctx, "read the operations", chromedp.Value(chromedp.CSS(ops)))

	// Not JSON: refused before anything is sent.
	run(t, ctx, "send a broken edit",
		chromedp.SetValue(chromedp.CSS(ops), `[{"op":"insert",`),
		chromedp.Click(chromedp.CSS("#retry-"+id)),
		chromedp.WaitVisible(chromedp.CSS(ops+`[aria-invalid="true"]`)))
	if msg := text(t, ctx, "#dl-"+id+" .msg.error"); !strings.HasPrefix(msg, "Not JSON") {
		t.Fatalf("a broken edit says %q; want Not JSON", msg)
	}
	if dl := e.call(200, "", "GET", "/v1/dlq/"+id, ""); dl["retried_as"] != nil {
		t.Fatalf("a broken edit was sent: %v", dl)
	}

	// The edit the API takes: another key.
	var parsed []map[string]any
	if err := json.Unmarshal([]byte(edited), &parsed); err != nil || len(parsed) != 1 || parsed[0]["values"].(map[string]any)["code"] != "dup" {
		t.Fatalf("the textarea holds %q; want the one insert of dup", edited)
	}
	edited = strings.Replace(edited, `"dup"`, `"fixed"`, 1)
	run(t, ctx, "retry edited",
		chromedp.SetValue(chromedp.CSS(ops), edited),
		chromedp.Click(chromedp.CSS("#retry-"+id)),
		chromedp.WaitVisible(chromedp.CSS("#retried-link")),
		chromedp.WaitNotPresent(chromedp.CSS("#dl-"+id))) // out of the list: retried
	link := get(t, ctx, "read the retry's link", chromedp.AttributeValue(chromedp.CSS("#retried-link"), "href"))
	retry := strings.TrimPrefix(link.Value, "/ui/transactions/")
	if s := e.waitState("", retry, "replicated"); s != "replicated" {
		t.Fatalf("the edited retry %s: %s; want replicated", retry, s)
	}
	e.call(200, "", "GET", "/v1/tables/instruments/fixed?consistency=database", "")

	// The retry's page, through the link: queued → applied → replicated.
	run(t, ctx, "follow the retry",
		chromedp.Click(chromedp.CSS("#retried-link")),
		chromedp.WaitVisible(chromedp.CSS(`#timeline li[data-step="replicated"].done`)))
	untilText(t, ctx, "#tx-state", "replicated")
	for _, step := range []string{"queued", "applied", "replicated"} {
		if s := text(t, ctx, `#timeline li[data-step="`+step+`"] time`); s == "" || s == "not yet" || s == "—" {
			t.Errorf("step %s shows time %q", step, s)
		}
	}
	screenshot(t, ctx, "transaction")

	// The dead letter's own page: failed with the error, linked to its retry.
	run(t, ctx, "open the failed transaction",
		chromedp.Navigate(e.srv.URL+"/ui/transactions/"+id),
		chromedp.WaitVisible(chromedp.CSS(`#timeline li[data-step="failed"]`)),
		chromedp.WaitVisible(chromedp.CSS("#retried-as")))
	if msg := text(t, ctx, "#timeline .tx-error"); !strings.Contains(msg, "UNIQUE") {
		t.Fatalf("the failed timeline says %q", msg)
	}
	if got := text(t, ctx, "#retried-as"); got != retry {
		t.Fatalf("retried as %q; want %s", got, retry)
	}
	screenshot(t, ctx, "transaction-failed")
}

// With a tokens file the pages ask for a token; a wrong one is refused;
// a read-only token reads tables and sees no retry or drop; an admin's
// sees them, and drops, recorded as its own.
func TestLoginAndScopes(t *testing.T) {
	e := setup(t, map[string]string{"admin": `["admin","read:*","write:*"]`, "viewer": `["read:*"]`})
	e.startApplier()
	id := e.poison("admin")
	ctx := tab(t)

	run(t, ctx, "open the dead letters",
		chromedp.Navigate(e.srv.URL+"/ui/dead-letters"),
		chromedp.WaitVisible(chromedp.CSS("#login-token")))
	screenshot(t, ctx, "login")
	run(t, ctx, "sign in with a wrong token",
		chromedp.SendKeys(chromedp.CSS("#login-token"), "spool_not-a-token"+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS("#login-error")))
	run(t, ctx, "sign in read-only",
		chromedp.SendKeys(chromedp.CSS("#login-token"), e.secrets["viewer"]+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS("#dlq-status")))
	untilText(t, ctx, "#who", "Signed in as token:viewer")
	if n := eval[int](t, ctx, `document.querySelectorAll('button.retry, button.drop, #retry-all:not([hidden])').length`); n != 0 {
		t.Fatalf("a read-only token sees %d retry or drop buttons", n)
	}
	if s := text(t, ctx, "#dlq-status"); !strings.Contains(s, "admin") {
		t.Fatalf("the read-only page says %q; want that it needs admin", s)
	}
	// It reads tables, the token kept across a reload (sessionStorage).
	run(t, ctx, "open a table, reloaded",
		chromedp.Navigate(e.srv.URL+"/ui/tables/instruments"),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`#rows tr[data-key="dup"]`)))

	run(t, ctx, "sign out, sign in as admin",
		chromedp.Click(chromedp.CSS("#sign-out")),
		chromedp.WaitVisible(chromedp.CSS("#login-token")),
		chromedp.SendKeys(chromedp.CSS("#login-token"), e.secrets["admin"]+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`#rows tr[data-key="dup"]`)),
		chromedp.Navigate(e.srv.URL+"/ui/dead-letters"),
		chromedp.WaitVisible(chromedp.CSS("#retry-"+id)),
		chromedp.WaitVisible(chromedp.CSS("#drop-"+id)))
	run(t, ctx, "drop it (twice: confirmed)",
		chromedp.Click(chromedp.CSS("#drop-"+id)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#drop-%s[data-armed="yes"]`, id))),
		chromedp.Click(chromedp.CSS("#drop-"+id)),
		chromedp.WaitNotPresent(chromedp.CSS("#dl-"+id)))
	if dl := e.call(200, "admin", "GET", "/v1/dlq/"+id, ""); dl["dropped_by"] != "token:admin" {
		t.Fatalf("dropped_by %v; want token:admin", dl["dropped_by"])
	}
}
