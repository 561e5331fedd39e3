package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
)

// IdempotencyHeader names the key a client sends so that a repeat of a
// write (a retry after a timeout) answers what the first answered and
// appends nothing.
const IdempotencyHeader = "Idempotency-Key"

// idempotency returns r's Idempotency-Key and the fingerprint of the
// request it came with: its method, its path and its decoded content (so
// that the same JSON written differently is the same request).
func idempotency(r *http.Request, content any) (key, fingerprint string) {
	key = r.Header.Get(IdempotencyHeader)
	if key == "" {
		return "", ""
	}
	body, _ := json.Marshal(content) // decoded JSON: it marshals
	h := sha256.New()
	h.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
	h.Write(body)
	return key, hex.EncodeToString(h.Sum(nil))
}
