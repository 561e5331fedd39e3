package api

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spoolgw/spool/internal/deadletter"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/store"
	"github.com/spoolgw/spool/internal/txn"
)

// The dead-letter queue: list, show, retry (with corrected operations),
// bulk retry, drop.

// deadLetterFilter reads the filter of a list or a bulk retry.
func deadLetterFilter(q url.Values) (store.DeadLetterFilter, error) {
	f := store.DeadLetterFilter{Table: q.Get("table"), Code: q.Get("code"), After: q.Get("after"), All: q.Get("all") == "true"}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, errorf(http.StatusBadRequest, "since must be an RFC 3339 time, not %q", v)
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > deadletter.MaxPage {
			return f, errorf(http.StatusBadRequest, "limit must be an integer from 1 to %d, not %q", deadletter.MaxPage, v)
		}
		f.Limit = n
	}
	if f.After != "" && !txn.ValidID(f.After) {
		return f, errorf(http.StatusBadRequest, "after must be a transaction id, not %q", f.After)
	}
	return f, nil
}

func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) error {
	f, err := deadLetterFilter(r.URL.Query())
	if err != nil {
		return err
	}
	dls, err := s.dlq.List(r.Context(), f)
	if err != nil {
		return err
	}
	body := map[string]any{"dead_letters": dls}
	if dls == nil {
		body["dead_letters"] = []*store.DeadLetter{}
	}
	limit := f.Limit
	if limit == 0 {
		limit = deadletter.DefaultPage
	}
	if n := len(dls); n > 0 && n == limit {
		// A full page: the next one starts after its last entry.
		next := r.URL.Query()
		next.Set("after", dls[n-1].Tx.ID)
		body["next"] = "/v1/dlq?" + next.Encode()
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func deadLetterID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !txn.ValidID(id) {
		return "", errorf(http.StatusBadRequest, "dead letter id must be a transaction id (UUID), not %q", id)
	}
	return id, nil
}

func (s *Server) getDeadLetter(w http.ResponseWriter, r *http.Request) error {
	id, err := deadLetterID(r)
	if err != nil {
		return err
	}
	dl, err := s.dlq.Get(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, dl)
	return nil
}

// retryDeadLetter retries one dead letter; a body with operations replaces
// the original ones (edit and retry). The retry is the principal's
// transaction: it records who retried.
func (s *Server) retryDeadLetter(w http.ResponseWriter, r *http.Request) error {
	id, err := deadLetterID(r)
	if err != nil {
		return err
	}
	var corrected *txn.Transaction
	if r.ContentLength != 0 {
		req := new(gateway.Request)
		if err := decode(w, r, req, true); err != nil {
			return err
		}
		if corrected, _, err = s.gw.Resolve(req); err != nil {
			return err
		}
	}
	tx, err := s.dlq.Retry(r.Context(), id, corrected, principal(r))
	if err != nil {
		return err
	}
	rc := gateway.ReceiptFor(tx)
	writeJSON(w, http.StatusAccepted, map[string]any{"retry_of": id, "transaction_id": rc.TransactionID, "state": rc.State, "ids": rc.IDs, "by": tx.Principal})
	return nil
}

// retryDeadLetters retries every dead letter the filter selects (query
// parameters as for the list), a page at a time.
func (s *Server) retryDeadLetters(w http.ResponseWriter, r *http.Request) error {
	f, err := deadLetterFilter(r.URL.Query())
	if err != nil {
		return err
	}
	f.All, f.After, f.Limit = false, "", deadletter.MaxPage
	type retried struct {
		RetryOf       string `json:"retry_of"`
		TransactionID string `json:"transaction_id,omitempty"`
		Error         string `json:"error,omitempty"`
	}
	out := []retried{}
	for {
		dls, err := s.dlq.List(r.Context(), f)
		if err != nil {
			return err
		}
		for _, dl := range dls {
			tx, err := s.dlq.Retry(r.Context(), dl.Tx.ID, nil, principal(r))
			if err != nil {
				out = append(out, retried{RetryOf: dl.Tx.ID, Error: err.Error()})
				continue
			}
			out = append(out, retried{RetryOf: dl.Tx.ID, TransactionID: tx.ID})
		}
		if len(dls) < f.Limit {
			break
		}
		f.After = dls[len(dls)-1].Tx.ID
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"retried": out})
	return nil
}

// dropDeadLetter drops a dead letter. Who dropped it is the principal of
// the request; it is kept with the time.
func (s *Server) dropDeadLetter(w http.ResponseWriter, r *http.Request) error {
	id, err := deadLetterID(r)
	if err != nil {
		return err
	}
	who := principal(r)
	if err := s.dlq.Drop(r.Context(), id, who); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"dropped": id, "by": who})
	return nil
}
