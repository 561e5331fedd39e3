package client_test

import (
	"errors"
	"testing"

	"github.com/spoolgw/spool/client"
)

// Subscribe: a snapshot of the matching rows, then a row event for a
// write the filter matches (and none for one it excludes), then the
// followed transaction's states; a reader without the table's scope is
// refused.
func TestSubscribe(t *testing.T) {
	t.Parallel()
	s := startSpool(t)
	ctx := t.Context()
	c := newClient(t, s.srv.URL, s.secret["writer"])

	before, err := c.Insert(ctx, "observations", client.Values{"target": "S1"})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, "observations", nil, client.Eq("target", "S1"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ev, err := sub.Next()
	if err != nil || ev.Type != "snapshot" || len(ev.Rows) != 1 || ev.Rows[0]["id"] != before.ID {
		t.Fatalf("first event %+v, %v; want the snapshot holding %s", ev, err, before.ID)
	}
	if _, err := c.Insert(ctx, "observations", client.Values{"target": "other"}); err != nil {
		t.Fatal(err)
	}
	ins, err := c.Insert(ctx, "observations", client.Values{"target": "S1", "exposure_s": 5})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err = sub.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "row" {
			continue
		}
		if ev.ID != before.ID { // the earlier row may be sent again as it applies
			break
		}
	}
	if ev.ID != ins.ID || ev.Row["target"] != "S1" || ev.TransactionID != ins.TransactionID || ev.Cursor == "" || sub.Cursor() != ev.Cursor {
		t.Fatalf("row event %+v, want the insert %+v (the excluded row sends nothing)", ev, ins)
	}

	follow, err := c.Subscribe(ctx, "", []string{ins.TransactionID})
	if err != nil {
		t.Fatal(err)
	}
	defer follow.Close()
	for {
		ev, err := follow.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == "transaction" && ev.TransactionID == ins.TransactionID && (ev.State == "applied" || ev.State == "replicated") {
			break
		}
	}

	reader := newClient(t, s.srv.URL, s.secret["reader"])
	if _, err := reader.Subscribe(ctx, "observations", nil); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("a reader of instruments subscribing to observations: %v, want forbidden", err)
	}
}
