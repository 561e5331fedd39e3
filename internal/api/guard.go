package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of the limits a Config leaves zero.
const (
	// DefaultBodyTimeout bounds the reading of a request's body: a 1 MiB
	// body takes a second at 8 Mbit/s; a body trickled in or chunked
	// without end is cut off after this.
	DefaultBodyTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds the writing of a response: a 10,000-row
	// list is a few MiB; a client that stops reading is cut off after
	// this instead of holding the rows in memory. A ?wait= adds its wait.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultMaxWaits bounds the requests waiting at once for a
	// transaction's state (?wait=): each holds a connection and a
	// goroutine for up to MaxWait.
	DefaultMaxWaits = 256
	// corsMaxAge is how long a browser may keep a preflight's answer.
	corsMaxAge = 10 * time.Minute
)

// Validate reports a configuration that cannot work, naming the field.
func (c Config) Validate() error {
	for _, o := range c.CORSOrigins {
		if err := http.NewCrossOriginProtection().AddTrustedOrigin(o); err != nil {
			return fmt.Errorf("api: CORSOrigins: %w", err)
		}
	}
	for _, h := range c.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/ ") {
			return fmt.Errorf("api: AllowedHosts: %q is not a host name", h)
		}
	}
	if c.BodyTimeout < 0 || c.WriteTimeout < 0 || c.MaxWaits < 0 {
		return errors.New("api: BodyTimeout, WriteTimeout and MaxWaits must not be negative")
	}
	return nil
}

// front is what every request passes before its route: the read and
// write deadlines, the Host header, CORS and the refusal of state-changing
// requests from other origins. It applies whether or not authentication
// is on: a browser on the same machine must not be able to write through
// a spool on loopback.
type front struct {
	bodyTimeout  time.Duration
	writeTimeout time.Duration
	hosts        map[string]bool // nil: any host
	cors         map[string]bool // origins allowed to read answers
	cop          *http.CrossOriginProtection
	trusted      []netip.Prefix
}

func newFront(c Config) *front {
	f := &front{bodyTimeout: c.BodyTimeout, writeTimeout: c.WriteTimeout, cop: http.NewCrossOriginProtection(),
		trusted: c.TrustedProxies, cors: map[string]bool{}}
	if f.bodyTimeout == 0 {
		f.bodyTimeout = DefaultBodyTimeout
	}
	if f.writeTimeout == 0 {
		f.writeTimeout = DefaultWriteTimeout
	}
	for _, h := range c.AllowedHosts {
		if h == "*" {
			f.hosts = nil
			break
		}
		if f.hosts == nil {
			f.hosts = map[string]bool{}
		}
		f.hosts[hostname(h)] = true
	}
	for _, o := range c.CORSOrigins {
		_ = f.cop.AddTrustedOrigin(o) // checked by Validate
		f.cors[o] = true
	}
	f.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, map[string]any{"error": "cross-origin request refused: a " + r.Method +
			" from another origin (Origin or Sec-Fetch-Site) changes nothing unless its origin is in --cors-origins"})
	}))
	return f
}

// hostname is the name of a Host header or address, lower case, without
// port or brackets.
func hostname(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.Trim(h, "[]"))
}

// serve runs next behind the front's checks.
func (f *front) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	rc := http.NewResponseController(w)
	now := time.Now()
	// Not supported by a recorder in a test: nothing to cut off there.
	_ = rc.SetReadDeadline(now.Add(f.bodyTimeout))
	_ = rc.SetWriteDeadline(now.Add(f.writeTimeout))
	if f.hosts != nil && !f.hosts[hostname(r.Host)] {
		writeJSON(w, http.StatusMisdirectedRequest, map[string]any{"error": fmt.Sprintf("Host %q is not a name of this spool (--allowed-hosts)", r.Host)})
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" && f.cors[origin] {
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Add("Vary", "Origin")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			w.Header().Set("Access-Control-Max-Age", strconv.Itoa(int(corsMaxAge.Seconds())))
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	f.cop.Handler(next).ServeHTTP(w, r)
}

// extendWrite gives the response of r d more to be written (a wait).
func (f *front) extendWrite(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d + f.writeTimeout))
}

// clientAddr is the address of r's client: the peer, unless the peer is a
// trusted proxy, in which case the last address of X-Forwarded-For that
// is not a trusted proxy.
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !s.front.isTrusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !s.front.isTrusted(hop) {
			return hop
		}
		host = hop
	}
	return host
}

func (f *front) isTrusted(addr string) bool {
	a, err := netip.ParseAddr(hostname(addr))
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range f.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseOrigins parses a comma-separated list of origins
// (scheme://host[:port]) for Config.CORSOrigins.
func ParseOrigins(s string) ([]string, error) {
	var out []string
	for _, o := range splitList(s) {
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("%q is not an origin (scheme://host[:port])", o)
		}
		out = append(out, strings.TrimSuffix(o, "/"))
	}
	return out, nil
}

// ParsePrefixes parses a comma-separated list of CIDRs (or single
// addresses) for Config.TrustedProxies.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, p := range splitList(s) {
		if !strings.Contains(p, "/") {
			a, err := netip.ParseAddr(p)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an address", p)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pr, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", p)
		}
		out = append(out, pr.Masked())
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
