package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spoolgw/spool/internal/auth"
	"github.com/spoolgw/spool/internal/gateway"
	"github.com/spoolgw/spool/internal/ui"
)

// access is what a route asks of the principal. Every route of the table
// declares one; the zero access is no declaration, and Routes' test fails
// for it.
type access int

const (
	noAccess access = iota
	// open: no credentials (/health, /readyz, /openapi.json).
	open
	// signedIn: any authenticated principal (GET /v1/tables lists only
	// the tables it may read or write; unknown paths answer 404).
	signedIn
	// readTable: read:{table} of the path.
	readTable
	// writeTable: write:{table} of the path.
	writeTable
	// writeBody: write on every table the decoded transaction touches,
	// checked by the handler after decoding, before anything is appended.
	writeBody
	// readKV and writeKV: read or write on spool's key-value table
	// (gateway.KVTable), the seed's /read and /write.
	readKV
	writeKV
	// follow: any write scope, or admin: a writer follows the transactions
	// it submitted (GET /v1/transactions/{id}).
	follow
	// subscribe: the live events of GET /v1/events: read on its ?table=,
	// and, for the transactions it follows (?transaction=), as follow.
	subscribe
	// admin: dead letters, stats, metrics, the telemetry lanes' status.
	admin
)

// String says what the access needs, as the docs and the 403s name it.
func (a access) String() string {
	switch a {
	case open:
		return "open"
	case signedIn:
		return "any principal"
	case readTable:
		return "read:{table}"
	case writeTable:
		return "write:{table}"
	case writeBody:
		return "write on every table of the body"
	case readKV:
		return "read:" + gateway.KVTable
	case writeKV:
		return "write:" + gateway.KVTable
	case follow:
		return "a write scope (any table) or admin"
	case subscribe:
		return "read:{table} of ?table=; for ?transaction=, a write scope or admin"
	case admin:
		return "admin"
	}
	return "none declared"
}

// need is the scope the access needs of request r, where one Need says
// it; ok is false for the accesses checked otherwise (open, signedIn,
// writeBody in the handler, follow).
func (a access) need(r *http.Request) (n auth.Need, ok bool) {
	switch a {
	case readTable:
		return auth.Read(r.PathValue("table")), true
	case subscribe:
		if t := r.URL.Query().Get("table"); t != "" {
			return auth.Read(t), true
		}
		return auth.Need{}, false
	case writeTable:
		return auth.Write(r.PathValue("table")), true
	case readKV:
		return auth.Read(gateway.KVTable), true
	case writeKV:
		return auth.Write(gateway.KVTable), true
	case admin:
		return auth.Admin(), true
	case noAccess:
		return auth.Need{}, true // the zero Need: nobody
	}
	return auth.Need{}, false
}

// route is one route of the table: its pattern, what it needs, whether
// the per-principal rate limit counts it, and its handler (nil for the
// routes other packages mount through Server.Handle).
type route struct {
	pattern string
	access  access
	limited bool
	handler handlerFunc
}

// table is every route spool serves, with its access: the one place
// that declares who may do what. Telemetry lanes and /metrics are
// mounted by Handle, which refuses a pattern this table lacks.
func (s *Server) routeTable() []route {
	return []route{
		{"POST /v1/transactions", writeBody, true, s.postTransaction},
		{"GET /v1/transactions/{id}", follow, false, s.getTransaction},
		{"GET /v1/tables", signedIn, false, s.listTables},
		{"GET /v1/whoami", signedIn, false, s.whoami},
		{"POST /v1/tables/{table}", writeTable, true, s.insertRow},
		{"GET /v1/tables/{table}", readTable, false, s.listRows},
		{"GET /v1/tables/{table}/{id}", readTable, false, s.getRow},
		{"PATCH /v1/tables/{table}/{id}", writeTable, true, s.updateRow},
		{"DELETE /v1/tables/{table}/{id}", writeTable, true, s.deleteRow},
		{"GET /v1/stats", admin, false, s.stats},
		{"GET /v1/events", subscribe, false, s.subscribeEvents},
		{"GET /v1/dlq", admin, false, s.listDeadLetters},
		{"GET /v1/dlq/{id}", admin, false, s.getDeadLetter},
		{"POST /v1/dlq/{id}/retry", admin, true, s.retryDeadLetter},
		{"POST /v1/dlq/retry", admin, true, s.retryDeadLetters},
		{"DELETE /v1/dlq/{id}", admin, true, s.dropDeadLetter},
		{"POST /write", writeKV, true, s.write},
		{"GET /read/{key}", readKV, false, s.read},
		{"GET /stats", admin, false, s.seedStats},
		{"GET /health", open, false, s.healthz},
		{"GET /readyz", open, false, s.readyz},
		{"GET /openapi.json", open, false, s.openAPI},
		// The dashboard's pages and assets: static files, open; every
		// datum on them comes from the routes above, with the caller's
		// own credentials. Mounted by routes.
		{uiPattern, open, false, nil},
		{"/", signedIn, false, func(w http.ResponseWriter, r *http.Request) error {
			return &httpError{status: http.StatusNotFound, msg: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)}
		}},
		// Mounted by Handle.
		{"GET /metrics", admin, false, nil},
		{"POST /v1/ingest/{table}", writeTable, true, nil},
		{"GET /v1/ingest/status", admin, false, nil},
		{"GET /api/buffer/status", admin, false, nil},
		{"GET /api/buffer/health", open, false, nil},
	}
}

func (s *Server) routes() {
	s.declared = map[string]route{}
	for _, rt := range s.routeTable() {
		s.declared[rt.pattern] = rt
		if rt.handler != nil {
			s.mount(rt, s.wrap(rt.handler))
		}
	}
	s.Handle(uiPattern, ui.Handler())
}

// uiPattern is the dashboard's route (internal/ui).
const uiPattern = "GET " + ui.Prefix

// Handle mounts another package's handler (the telemetry lane, /metrics)
// on a route of the table, with the route's access, rate limit and
// timing. It panics for a pattern the table does not declare: every
// route names its scope in one place.
func (s *Server) Handle(pattern string, h http.Handler) {
	rt, ok := s.declared[pattern]
	if !ok || rt.handler != nil {
		panic(fmt.Sprintf("api: Handle(%q): not a mounted route of the table in routes.go", pattern))
	}
	s.mount(rt, h)
}

// mount registers h under rt's pattern behind authentication, the rate
// limit and rt's access.
func (s *Server) mount(rt route, h http.Handler) {
	s.mux.Handle(rt.pattern, s.metrics.observe(rt.pattern, s.guard(rt, h)))
}

// guard authenticates a request (unless the route is open), applies the
// rate limit of its principal, and checks the route's access.
func (s *Server) guard(rt route, h http.Handler) http.Handler {
	if rt.access == open {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err != nil {
			auth.WriteError(w, err)
			return
		}
		r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		if rt.limited {
			if ok, wait := s.limiter.allow(s.limitKey(r, p), time.Now()); !ok {
				s.tooMany(w, wait)
				return
			}
		}
		if n, ok := rt.access.need(r); ok {
			if err := p.Check(n); err != nil {
				auth.WriteError(w, err)
				return
			}
		}
		if (rt.access == follow || rt.access == subscribe && r.URL.Query().Has("transaction")) && !p.Allows(auth.ScopeAdmin) && !hasWrite(p) {
			auth.WriteError(w, &auth.ForbiddenError{Principal: p, Missing: []auth.Scope{auth.ScopeAdmin}})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hasWrite reports whether p holds a write scope of any table.
func hasWrite(p auth.Principal) bool {
	for _, sc := range p.Scopes {
		if sc.Action == auth.ActionWrite {
			return true
		}
	}
	return false
}

// authenticate returns the principal of r: Anonymous without an
// authenticator.
func (s *Server) authenticate(r *http.Request) (auth.Principal, error) {
	if s.auth == nil {
		return auth.Anonymous(), nil
	}
	return s.auth.Authenticate(r)
}

// principal is who sends r, as transactions and dead letters record it.
func principal(r *http.Request) string {
	if p, ok := auth.FromContext(r.Context()); ok {
		return p.String()
	}
	return ""
}
