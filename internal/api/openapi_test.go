package api

import (
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// loadOpenAPI loads and validates the embedded document.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("internal/api/openapi.json does not load: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("internal/api/openapi.json is not a valid OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("internal/api/openapi.json is OpenAPI %s; want 3.1", doc.OpenAPI)
	}
	return doc
}

// openAPIPath is the OpenAPI path and method of a route pattern of the
// table: "GET /v1/tables/{table}" is ("/v1/tables/{table}", "get"); a
// wildcard "{rest...}" is "{rest}". ok is false for the catch-all "/".
func openAPIPath(pattern string) (path, method string, ok bool) {
	method, path, found := strings.Cut(pattern, " ")
	if !found {
		return "", "", false
	}
	return strings.ReplaceAll(path, "...}", "}"), strings.ToLower(method), true
}

// Every route of the table in routes.go is in openapi.json with the scope
// it declares (x-spool-scope; open routes with no security), and every
// operation of the document is a route of the table: the document cannot
// fall behind the router, nor describe a route that is gone.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	s := New(nil, nil, nil, Config{}, nil)
	routed := map[string]bool{}
	for _, rt := range s.routeTable() {
		path, method, ok := openAPIPath(rt.pattern)
		if !ok {
			continue // the catch-all 404
		}
		routed[method+" "+path] = true
		var op *openapi3.Operation
		if item := doc.Paths.Value(path); item != nil {
			op = item.GetOperation(strings.ToUpper(method))
		}
		if op == nil {
			security := ""
			if rt.access == open {
				security = `, "security": []`
			}
			t.Errorf("route %q of internal/api/routes.go is not in internal/api/openapi.json; add to \"paths\":\n"+
				"  %q: {%q: {\"operationId\": \"…\", \"summary\": \"…\", \"x-spool-scope\": %q%s,\n"+
				"    \"responses\": {\"200\": {\"description\": \"…\", \"content\": {\"application/json\": {\"schema\": {…}}}}, \"default\": {\"$ref\": \"#/components/responses/Error\"}}}}\n"+
				"  (its path parameters, query parameters and request body too; then TestOpenAPIValidatesRealAnswers should send it a request)",
				rt.pattern, path, method, rt.access.String(), security)
			continue
		}
		if got, _ := op.Extensions["x-spool-scope"].(string); got != rt.access.String() {
			t.Errorf("%s in openapi.json: x-spool-scope %q; routes.go declares %q", rt.pattern, got, rt.access.String())
		}
		if isOpen := op.Security != nil && len(*op.Security) == 0; isOpen != (rt.access == open) {
			t.Errorf("%s in openapi.json: open (\"security\": []) is %v; routes.go declares access %q", rt.pattern, isOpen, rt.access.String())
		}
		if op.OperationID == "" || op.Summary == "" {
			t.Errorf("%s in openapi.json: needs an operationId and a summary", rt.pattern)
		}
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, strings.ToLower(method)+" "+path)
		}
	}
	slices.Sort(documented)
	for _, d := range documented {
		if !routed[d] {
			method, path, _ := strings.Cut(d, " ")
			t.Errorf("openapi.json documents %s %s, which no route of internal/api/routes.go serves: remove it or add the route", strings.ToUpper(method), path)
		}
	}
	if len(documented) < 20 {
		t.Fatalf("only %d operations documented: %v", len(documented), documented)
	}
}

// The coverage check names what to add for a route the document lacks.
func TestOpenAPIPathOfPattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ pattern, path, method string }{
		{"GET /v1/tables/{table}/{id}", "/v1/tables/{table}/{id}", "get"},
		{"GET /ui/{rest...}", "/ui/{rest}", "get"},
		{"POST /v1/dlq/retry", "/v1/dlq/retry", "post"},
	} {
		path, method, ok := openAPIPath(tc.pattern)
		if !ok || path != tc.path || method != tc.method {
			t.Errorf("openAPIPath(%q) = %q %q %v", tc.pattern, path, method, ok)
		}
	}
	if _, _, ok := openAPIPath("/"); ok {
		t.Error("the catch-all is no operation")
	}
}
