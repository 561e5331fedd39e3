package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spoolgw/spool/internal/auth"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/query"
	"github.com/spoolgw/spool/internal/schema"
	"github.com/spoolgw/spool/internal/txn"
)

// SourceHeader names where the rows of a read came from.
const SourceHeader = "X-Spool-Source"

func (s *Server) postTransaction(w http.ResponseWriter, r *http.Request) error {
	var req gateway.Request
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	if err := authorizeWrites(r, req.Operations); err != nil {
		return err
	}
	req.Principal = principal(r)
	req.Key, req.Fingerprint = idempotency(r, req.Operations)
	rc, err := s.gw.Submit(r.Context(), &req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, rc)
	return nil
}

// rowReceipt is the answer of the single-row routes.
type rowReceipt struct {
	ID            string    `json:"id"`
	TransactionID string    `json:"transaction_id"`
	State         txn.State `json:"state"`
}

// authorizeWrites checks that the principal of r may write every table
// ops touch: all or nothing, before anything is appended. An empty list is
// left to the gateway to refuse (400).
func authorizeWrites(r *http.Request, ops []gateway.OpRequest) error {
	if len(ops) == 0 {
		return nil
	}
	tables := make([]string, len(ops))
	for i, op := range ops {
		tables[i] = op.Table
	}
	return auth.Authorize(r.Context(), auth.Write(tables...))
}

func (s *Server) submitOne(w http.ResponseWriter, r *http.Request, op gateway.OpRequest, status int) error {
	req := &gateway.Request{Operations: []gateway.OpRequest{op}, Principal: principal(r)}
	req.Key, req.Fingerprint = idempotency(r, op.Values)
	rc, err := s.gw.Submit(r.Context(), req)
	if err != nil {
		return err
	}
	if status == http.StatusCreated {
		w.Header().Set("Location", "/v1/tables/"+url.PathEscape(op.Table)+"/"+url.PathEscape(rc.IDs[0]))
	}
	writeJSON(w, status, rowReceipt{ID: rc.IDs[0], TransactionID: rc.TransactionID, State: rc.State})
	return nil
}

func (s *Server) insertRow(w http.ResponseWriter, r *http.Request) error {
	var values map[string]any
	if err := decode(w, r, &values, false); err != nil {
		return err
	}
	if values == nil {
		return errorf(http.StatusBadRequest, "body must be a JSON object of column values")
	}
	return s.submitOne(w, r, gateway.OpRequest{Op: string(txn.Insert), Table: r.PathValue("table"), Values: values}, http.StatusCreated)
}

func (s *Server) updateRow(w http.ResponseWriter, r *http.Request) error {
	var values map[string]any
	if err := decode(w, r, &values, false); err != nil {
		return err
	}
	id, _ := json.Marshal(r.PathValue("id"))
	return s.submitOne(w, r, gateway.OpRequest{Op: string(txn.Update), Table: r.PathValue("table"), ID: id, Values: values}, http.StatusAccepted)
}

func (s *Server) deleteRow(w http.ResponseWriter, r *http.Request) error {
	id, _ := json.Marshal(r.PathValue("id"))
	return s.submitOne(w, r, gateway.OpRequest{Op: string(txn.Delete), Table: r.PathValue("table"), ID: id}, http.StatusAccepted)
}

func (s *Server) table(r *http.Request) (*schema.Table, error) {
	t, err := s.gw.Table(r.PathValue("table"))
	if err != nil {
		return nil, errorf(http.StatusNotFound, "%v", err)
	}
	return t, nil
}

func (s *Server) getRow(w http.ResponseWriter, r *http.Request) error {
	t, err := s.table(r)
	if err != nil {
		return err
	}
	if t.Key == nil {
		return errorf(http.StatusBadRequest, "table %q has no single-column primary key; list it with filters instead", t.Name)
	}
	c, err := gateway.ParseConsistency(r.URL.Query().Get("consistency"))
	if err != nil {
		return err
	}
	row, src, found, err := s.gw.Get(r.Context(), t, r.PathValue("id"), c)
	if err != nil {
		return err
	}
	if !found {
		return errorf(http.StatusNotFound, "no row %s/%s", t.Name, r.PathValue("id"))
	}
	w.Header().Set(SourceHeader, string(src))
	writeJSON(w, http.StatusOK, row)
	return nil
}

func (s *Server) listRows(w http.ResponseWriter, r *http.Request) error {
	t, err := s.table(r)
	if err != nil {
		return err
	}
	c, err := gateway.ParseConsistency(r.URL.Query().Get("consistency"))
	if err != nil {
		return err
	}
	q, err := query.Parse(t, r.URL.Query())
	if err != nil {
		return err
	}
	rows, buffered, src, err := s.gw.ListMarked(r.Context(), q, c)
	if err != nil {
		return err
	}
	if rows == nil {
		rows, buffered = []schema.Row{}, []bool{}
	}
	w.Header().Set(SourceHeader, string(src))
	// buffered[i]: rows[i] has changes the database (or its replicas)
	// lacks yet.
	writeJSON(w, http.StatusOK, map[string]any{"rows": rows, "buffered": buffered})
	return nil
}

// whoami answers who the caller is and what it may do: the dashboard
// hides the actions its scopes do not allow.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	scopes := make([]string, len(p.Scopes))
	for i, sc := range p.Scopes {
		scopes[i] = sc.String()
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": p.String(), "scopes": scopes})
	return nil
}

// listTables lists the tables the principal may read or write.
func (s *Server) listTables(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	cat := s.gw.Catalog()
	tables := make([]*schema.Table, 0)
	for _, n := range cat.Names() {
		if p.Check(auth.Read(n)) != nil && p.Check(auth.Write(n)) != nil {
			continue
		}
		t, _ := cat.Table(n)
		tables = append(tables, t)
	}
	writeJSON(w, http.StatusOK, map[string]any{"tables": tables})
	return nil
}

// DefaultWait is how long ?wait= waits when no timeout is given.
const DefaultWait = 2 * time.Second

func (s *Server) getTransaction(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !txn.ValidID(id) {
		return errorf(http.StatusBadRequest, "transaction id must be a UUID, not %q", id)
	}
	q := r.URL.Query()
	var st any
	var found bool
	if want := q.Get("wait"); want != "" {
		state, err := txn.ParseState(want)
		if err != nil {
			return errorf(http.StatusBadRequest, "wait: %v", err)
		}
		timeout := DefaultWait
		if v := q.Get("timeout"); v != "" {
			if timeout, err = time.ParseDuration(v); err != nil || timeout < 0 || timeout > MaxWait {
				return errorf(http.StatusBadRequest, "timeout must be a duration from 0s to %v, not %q", MaxWait, v)
			}
		}
		select {
		case s.waits <- struct{}{}:
			defer func() { <-s.waits }()
		default:
			w.Header().Set("Retry-After", "1")
			return errorf(http.StatusServiceUnavailable, "%d requests wait for a state already; retry later, or ask without wait", cap(s.waits))
		}
		s.front.extendWrite(w, timeout)
		ctx, cancel := contextWithTimeout(r, timeout)
		defer cancel()
		st, found, err = s.gw.Wait(ctx, id, state)
		if err != nil {
			return err
		}
	} else {
		var err error
		if st, found, err = s.gw.Status(r.Context(), id); err != nil {
			return err
		}
	}
	if !found {
		return errorf(http.StatusNotFound, "no transaction %s: none was queued with that id, or it was applied longer ago than its record is kept (--applied-retention)", id)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) error {
	ls, err := s.gw.LogStats(r.Context())
	if err != nil {
		return fmt.Errorf("log stats: %w", err)
	}
	ov, err := s.gw.Overlay().Stats(r.Context())
	if err != nil {
		return fmt.Errorf("overlay stats: %w", err)
	}
	c := s.gw.Tracker().Counters()
	body := map[string]any{
		"log":             ls,
		"overlay":         ov,
		"queued":          c.Queued,
		"processed":       c.Processed,
		"failed":          c.Failed,
		"processing_rate": s.gw.Tracker().Rate(time.Now()),
		"ack_to_applied":  s.gw.Tracker().Latency(time.Now()),
		"uptime_seconds":  time.Since(s.start).Seconds(),
	}
	for k, f := range s.extra {
		body[k] = f()
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}
