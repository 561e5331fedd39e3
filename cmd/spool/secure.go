package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spoolgw/spool/internal/api"
	"github.com/spoolgw/spool/internal/auth"
)

// Limits of the HTTP server, the defaults of their flags.
const (
	// DefaultReadHeaderTimeout bounds a request's headers: a client that
	// sends them slowly holds a connection no longer than this.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout is how long a kept-alive connection may wait for
	// its next request.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxConnections bounds the connections open at once: each
	// costs a goroutine, buffers and a file descriptor. It is far above
	// what a busy site's writers open (a load generator of 256 writers
	// and 8 readers keeps about 1,300), so that reaching it means
	// something is wrong; there, idle keep-alives are closed first, and
	// then new clients wait.
	DefaultMaxConnections = 10000
)

// securityConfig is what spool serve is told about credentials, TLS and
// the HTTP server's limits.
type securityConfig struct {
	tokens, jwtKeys, jwtIssuer, jwtAudience string
	insecureNoAuth                          bool
	allowedHosts, corsOrigins, trusted      string
	tlsCert, tlsKey                         string
	readHeaderTimeout, bodyTimeout          time.Duration
	writeTimeout, idleTimeout               time.Duration
	maxConnections, maxWaits                int
}

func securityFlags(fs *flag.FlagSet, c *securityConfig) {
	fs.StringVar(&c.tokens, "tokens", "", "JSON `file` of API tokens: {\"tokens\":[{\"name\":…,\"sha256\":…,\"scopes\":[…]}]} (spool token makes one); reloaded on SIGHUP")
	fs.StringVar(&c.jwtKeys, "jwt-keys", "", "JWKS `file` of the keys that sign JWTs (RS256, ES256, EdDSA); reloaded on SIGHUP")
	fs.StringVar(&c.jwtIssuer, "jwt-issuer", "", "the iss every JWT must carry")
	fs.StringVar(&c.jwtAudience, "jwt-audience", "", "a value every JWT's aud must hold")
	fs.BoolVar(&c.insecureNoAuth, "insecure-no-auth", false, "listen beyond loopback without credentials: anyone who reaches the port may do anything")
	fs.StringVar(&c.allowedHosts, "allowed-hosts", "", "comma-separated `names` the Host header may carry; * for any (default: the --listen host, localhost, 127.0.0.1 and ::1; any, on a wildcard --listen)")
	fs.StringVar(&c.corsOrigins, "cors-origins", "", "comma-separated `origins` (https://host[:port]) whose pages may call the API from a browser (default: none)")
	fs.StringVar(&c.trusted, "trusted-proxies", "", "comma-separated `CIDRs` of proxies whose X-Forwarded-For names the client (default: none)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate `file` (chain) to serve HTTPS with, TLS 1.2 or newer; reloaded on SIGHUP")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key `file` of --tls-cert")
	fs.DurationVar(&c.readHeaderTimeout, "read-header-timeout", DefaultReadHeaderTimeout, "how long a request's headers may take to arrive")
	fs.DurationVar(&c.bodyTimeout, "body-timeout", api.DefaultBodyTimeout, "how long a request's body may take to arrive (a slow or endless body is cut off)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", api.DefaultWriteTimeout, "how long a response may take to be written (a client that stops reading is cut off; a ?wait= adds its wait)")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", DefaultIdleTimeout, "how long a kept-alive connection may wait for its next request")
	fs.IntVar(&c.maxConnections, "max-connections", DefaultMaxConnections, "connections open at once; past it the oldest idle keep-alive is closed to let a new client in, and with none idle new clients wait")
	fs.IntVar(&c.maxWaits, "max-waits", api.DefaultMaxWaits, "requests waiting at once for a transaction's state (?wait=); more get 503")
}

// isLoopback reports whether the host of a listen address is a loopback
// address (or localhost); a wildcard or any other name is not.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// newAuth builds the authenticator of c and refuses to listen beyond
// loopback without credentials, unless told to.
func newAuth(c *serveConfig, logger *slog.Logger) (*auth.Authenticator, error) {
	a, err := auth.New(auth.Config{TokensFile: c.sec.tokens, JWTKeysFile: c.sec.jwtKeys,
		JWTIssuer: c.sec.jwtIssuer, JWTAudience: c.sec.jwtAudience, Logger: logger})
	if err != nil {
		return nil, err
	}
	switch {
	case a.Enabled():
	case isLoopback(c.listen):
		logger.Info("no credentials configured (--tokens, --jwt-keys): every request on loopback may do anything")
	case c.sec.insecureNoAuth:
		logger.Warn("--insecure-no-auth: listening beyond loopback without credentials; anyone who reaches the port may read, write and delete every table", "listen", c.listen)
	default:
		return nil, fmt.Errorf("--listen %s is not a loopback address and no credentials are configured: give --tokens or --jwt-keys (or --insecure-no-auth to serve anyone)", c.listen)
	}
	return a, nil
}

// apiConfig maps the flags onto the API's limits.
func apiConfig(c *serveConfig, a *auth.Authenticator) (api.Config, error) {
	cfg := api.Config{Auth: a, RateLimit: api.RateLimit{Rate: c.rateLimit, Burst: c.rateBurst},
		BodyTimeout: c.sec.bodyTimeout, WriteTimeout: c.sec.writeTimeout, MaxWaits: c.sec.maxWaits}
	var err error
	if cfg.CORSOrigins, err = api.ParseOrigins(c.sec.corsOrigins); err != nil {
		return cfg, fmt.Errorf("--cors-origins: %w", err)
	}
	if cfg.TrustedProxies, err = api.ParsePrefixes(c.sec.trusted); err != nil {
		return cfg, fmt.Errorf("--trusted-proxies: %w", err)
	}
	cfg.AllowedHosts = splitComma(c.sec.allowedHosts)
	if len(cfg.AllowedHosts) == 0 {
		host, _, _ := net.SplitHostPort(c.listen)
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			cfg.AllowedHosts = []string{"*"}
		} else {
			cfg.AllowedHosts = []string{host, "localhost", "127.0.0.1", "::1"}
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if c.sec.bodyTimeout <= 0 || c.sec.writeTimeout <= 0 || c.sec.readHeaderTimeout <= 0 || c.sec.idleTimeout <= 0 {
		return cfg, errors.New("--read-header-timeout, --body-timeout, --write-timeout and --idle-timeout must be above 0")
	}
	if c.sec.maxConnections <= 0 || c.sec.maxWaits <= 0 {
		return cfg, errors.New("--max-connections and --max-waits must be above 0")
	}
	return cfg, nil
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// certificate holds the TLS certificate, swapped whole on reload.
type certificate struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

func loadCertificate(certFile, keyFile string) (*certificate, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if certFile == "" {
		return nil, nil
	}
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the files again; on an error the certificate loaded
// before stays in use.
func (c *certificate) reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert %s, --tls-key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert.Store(&cert)
	return nil
}

func (c *certificate) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cert.Load(), nil
		},
	}
}

// reloadOnHangup reloads the credentials and the certificate on every
// SIGHUP until ctx ends; a failed reload is logged and the old ones stay.
func reloadOnHangup(ctx context.Context, a *auth.Authenticator, cert *certificate, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if a.Enabled() {
				if err := a.Reload(ctx); err != nil {
					logger.Error("SIGHUP: credentials not reloaded; the ones loaded before stay in force", "err", err)
				}
			}
			if cert != nil {
				if err := cert.reload(); err != nil {
					logger.Error("SIGHUP: TLS certificate not reloaded; the one loaded before stays in use", "err", err)
				} else {
					logger.Info("SIGHUP: TLS certificate reloaded", "cert", cert.certFile)
				}
			}
		}
	}()
}

// limitListener accepts at most n connections open at once. Past that,
// Accept first closes a connection that sits idle between requests (a
// client's keep-alive, the oldest first): idle connections must not keep
// clients with a request to send from being accepted. With none idle,
// Accept waits for one to close or go idle. Its ConnState follows the
// server's connections (http.Server.ConnState).
type limitListener struct {
	net.Listener
	max int

	mu   sync.Mutex
	open int
	idle []*limitConn  // oldest first
	more chan struct{} // a slot may be free, or a connection idle

	closed    chan struct{} // closed by Close: an Accept waiting for a slot returns
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, max: n, more: make(chan struct{}, 1), closed: make(chan struct{})}
}

// Close closes the listener, and ends an Accept waiting for a slot: a
// server shutting down at the cap waits for its Serve to return.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.mu.Unlock()
			break
		}
		var victim *limitConn
		if len(l.idle) > 0 {
			victim, l.idle = l.idle[0], l.idle[1:]
		}
		l.mu.Unlock()
		if victim != nil {
			victim.Close() // frees its slot
			continue
		}
		select {
		case <-l.more:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.release(nil)
		return nil, err
	}
	return &limitConn{Conn: c, l: l}, nil
}

// release frees the slot of c (nil: a slot taken for an Accept that
// failed).
func (l *limitListener) release(c *limitConn) {
	l.mu.Lock()
	l.open--
	if c != nil {
		l.forget(c)
	}
	l.mu.Unlock()
	l.wake()
}

func (l *limitListener) wake() {
	select {
	case l.more <- struct{}{}:
	default:
	}
}

// forget takes c off the idle list; l.mu is held.
func (l *limitListener) forget(c *limitConn) {
	for i, ic := range l.idle {
		if ic == c {
			l.idle = append(l.idle[:i], l.idle[i+1:]...)
			return
		}
	}
}

// ConnState notes which connections are idle between requests.
func (l *limitListener) ConnState(nc net.Conn, state http.ConnState) {
	c, ok := nc.(*limitConn)
	if !ok {
		return
	}
	l.mu.Lock()
	l.forget(c)
	if state == http.StateIdle {
		l.idle = append(l.idle, c)
	}
	l.mu.Unlock()
	if state == http.StateIdle {
		l.wake()
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// newHTTPServer is the API's server with its limits.
func newHTTPServer(c *serveConfig, h http.Handler, cert *certificate, logger *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.sec.readHeaderTimeout,
		IdleTimeout:       c.sec.idleTimeout,
		// The body's and the response's deadlines are the API's, per
		// request (api.Config): a wait extends its own.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	if cert != nil {
		srv.TLSConfig = cert.tlsConfig()
	}
	return srv
}

// tokenCommand prints a new secret and the tokens file entry of its hash.
func tokenCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("spool token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "`name` of the token (who it is recorded as: token:NAME)")
	scopes := fs.String("scopes", "", "comma-separated `scopes`: read:TABLE, read:*, write:TABLE, write:*, admin")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: spool token --name NAME --scopes read:*,write:observations\n\nPrints a new secret (give it to the client; spool never stores it) and the\nentry of the tokens file (--tokens) that holds its SHA-256.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *scopes == "" {
		fs.Usage()
		return errors.New("spool token: --name and --scopes are required")
	}
	var list []string
	for _, s := range splitComma(*scopes) {
		sc, err := auth.ParseScope(s)
		if err != nil {
			return fmt.Errorf("--scopes: %w", err)
		}
		list = append(list, `"`+sc.String()+`"`)
	}
	secret, hash := auth.NewSecret()
	fmt.Fprintf(stdout, "secret: %s\nentry:  {\"name\":%q,\"sha256\":%q,\"scopes\":[%s]}\n", secret, *name, hash, strings.Join(list, ","))
	return nil
}
