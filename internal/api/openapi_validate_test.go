package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/spoolgw/spool/internal/api"
)

// contract sends requests to a real spool and checks each request and its
// answer against the OpenAPI document.
type contract struct {
	t      *testing.T
	e      *env
	router routers.Router
}

func newContract(t *testing.T, e *env) *contract {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{t: t, e: e, router: router}
}

// call sends method path with body (JSON unless contentType says
// otherwise) as cred ("" for none), validates the request when the answer
// is a success, and the answer always; it fails unless the status is want.
func (c *contract) call(want int, cred, method, path, body string, contentType ...string) map[string]any {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if len(contentType) > 0 {
		req.Header.Set("Content-Type", contentType[0])
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Fatalf("%s %s: not in openapi.json: %v", method, path, err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	reqErr := openapi3filter.ValidateRequest(c.t.Context(), in)
	req.Body = http.NoBody // validation read it
	if body != "" {
		req.Body = io.NopCloser(strings.NewReader(body))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		c.t.Fatalf("%s %s = %d %s; want %d", method, path, res.StatusCode, raw, want)
	}
	if reqErr != nil && res.StatusCode < 400 {
		c.t.Errorf("%s %s succeeded, but openapi.json says the request is invalid: %v", method, path, reqErr)
	}
	err = openapi3filter.ValidateResponse(c.t.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: res.StatusCode, Header: res.Header, Body: io.NopCloser(bytes.NewReader(raw)), Options: opts})
	if err != nil {
		c.t.Errorf("%s %s: answer %d %s does not match openapi.json: %v", method, path, res.StatusCode, raw, err)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// Real requests through a real pipeline, every kind the API serves and
// its errors, each request and answer validated against openapi.json:
// the document describes what spool does, not what it was meant to.
func TestOpenAPIValidatesRealAnswers(t *testing.T) {
	t.Parallel()
	e, cr := setupAuth(t, options{})
	e.startApplier()
	c := newContract(t, e)
	admin, writer, reader := cr.secret["admin"], cr.secret["writer"], cr.secret["instruments"]

	c.call(200, "", "GET", "/openapi.json", "")
	c.call(200, "", "GET", "/health", "")
	c.call(200, "", "GET", "/readyz", "")
	c.call(200, writer, "GET", "/v1/tables", "")

	ins := c.call(201, writer, "POST", "/v1/tables/observations", `{"target":"M31","exposure_s":30}`)
	id := ins["id"].(string)
	c.call(200, writer, "GET", "/v1/tables/observations/"+id, "")
	c.call(202, writer, "PATCH", "/v1/tables/observations/"+id, `{"status":"done"}`)
	tx := c.call(202, writer, "POST", "/v1/transactions", `{"operations":[
		{"op":"insert","table":"observations","values":{"target":"M42"},"as":"obs"},
		{"op":"insert","table":"frames","values":{"observation_id":{"$ref":"obs"},"seq":1}},
		{"op":"update","table":"observations","id":{"$ref":"obs"},"values":{"status":"running"}}]}`)
	obs := tx["refs"].(map[string]any)["obs"].(string)
	c.call(200, writer, "GET", "/v1/transactions/"+tx["transaction_id"].(string)+"?wait=applied&timeout=10s", "")
	c.call(200, writer, "GET", "/v1/transactions/"+tx["transaction_id"].(string), "")
	c.call(200, writer, "GET", "/v1/tables/frames?observation_id=eq."+obs+"&seq=gt.0&order=seq.desc&limit=50", "")
	c.call(200, writer, "GET", "/v1/tables/observations?status=in.(done,running)&finished_at=is.null&consistency=database", "")
	del := c.call(202, writer, "DELETE", "/v1/tables/observations/"+id, "")
	c.call(200, writer, "GET", "/v1/transactions/"+del["transaction_id"].(string)+"?wait=applied&timeout=10s", "")
	w := c.call(202, writer, "POST", "/write", `{"key":"k","value":{"a":1}}`)
	c.call(200, writer, "GET", "/v1/transactions/"+w["transaction_id"].(string)+"?wait=applied&timeout=10s", "")
	c.call(200, writer, "GET", "/read/k", "")
	c.call(404, writer, "GET", "/read/nothing", "")
	c.call(200, admin, "GET", "/v1/stats", "")
	c.call(200, admin, "GET", "/stats", "")

	// Dead letters: two inserts of the same key, the second fails.
	c.call(201, writer, "POST", "/v1/tables/instruments", `{"code":"dup","name":"first"}`)
	var dead []string
	for i := range 3 {
		p := c.call(202, writer, "POST", "/v1/transactions", fmt.Sprintf(`{"operations":[{"op":"insert","table":"instruments","values":{"code":"dup","name":"n%d"}}]}`, i))
		pid := p["transaction_id"].(string)
		if st := c.call(200, writer, "GET", "/v1/transactions/"+pid+"?wait=applied&timeout=10s", ""); st["state"] != "failed" {
			t.Fatalf("poison %d: %v", i, st)
		}
		dead = append(dead, pid)
	}
	c.call(200, admin, "GET", "/v1/dlq?table=instruments&limit=2", "")
	c.call(200, admin, "GET", "/v1/dlq/"+dead[0], "")
	c.call(202, admin, "POST", "/v1/dlq/"+dead[0]+"/retry", `{"operations":[{"op":"insert","table":"instruments","values":{"code":"fixed","name":"x"}}]}`)
	c.call(409, admin, "POST", "/v1/dlq/"+dead[0]+"/retry", "")
	c.call(202, admin, "POST", "/v1/dlq/"+dead[1]+"/retry", "")
	c.call(200, admin, "DELETE", "/v1/dlq/"+dead[2], "")
	c.call(202, admin, "POST", "/v1/dlq/retry?table=nothing", "")

	// Errors.
	c.call(400, writer, "POST", "/v1/tables/observations", `{"target":`)
	c.call(400, writer, "POST", "/v1/transactions", `{"operations":[{"op":"insert","table":"observations","values":{"target":5}}]}`)
	c.call(400, writer, "GET", "/v1/tables/observations?target=like.M", "")
	c.call(401, "", "GET", "/v1/tables/observations", "")
	c.call(401, "wrong", "POST", "/v1/tables/observations", `{"target":"M1"}`)
	c.call(403, reader, "POST", "/v1/tables/instruments", `{"code":"c","name":"n"}`)
	c.call(403, writer, "GET", "/v1/stats", "")
	c.call(404, writer, "GET", "/v1/tables/observations/"+id, "")
	c.call(404, writer, "PATCH", "/v1/tables/observations/"+id, `{"status":"done"}`)
	c.call(404, admin, "GET", "/v1/dlq/0190b5a0-0000-7000-8000-00000000abcd", "")
	c.call(404, writer, "GET", "/v1/tables/nosuch", "")
	c.call(415, writer, "POST", "/v1/tables/observations", `target=M1`, "application/x-www-form-urlencoded")
}
