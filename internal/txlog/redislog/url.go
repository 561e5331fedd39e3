package redislog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrClusterUnsupported is wrapped by Open when the URL or the server is a
// Redis Cluster: the log does not run on one (see the package
// documentation).
var ErrClusterUnsupported = errors.New("the log does not run on a Redis Cluster")

// URL schemes of a log on Redis Sentinel: the master of a named set,
// found through its Sentinels; the second with TLS.
const (
	SentinelScheme    = "redis-sentinel"
	SentinelTLSScheme = "rediss-sentinel"
)

// IsSentinelURL reports whether rawURL names a Redis master through
// Sentinel (redis-sentinel:// or rediss-sentinel://).
func IsSentinelURL(rawURL string) bool {
	scheme, _, _ := strings.Cut(rawURL, "://")
	return scheme == SentinelScheme || scheme == SentinelTLSScheme
}

// dialAttempts is how many times the pool dials for one try of a command.
// go-redis dials 5 times, 100 ms apart, by default, under each of a
// command's tries (MaxRetries, 3, plus the first): a command against a
// Redis that is down took about 1.7 s to fail, and an append queued behind
// it twice that, where the API must refuse a write at once (503). One dial
// per try leaves the command's own retries, with their backoff (8 to
// 512 ms), to ride out a blip: a refused command now fails in about 0.1 s.
const dialAttempts = 1

// newClient builds a universal client from a URL: one server's
// (redis://, rediss://, unix://) or a Sentinel set's (redis-sentinel://),
// whose master the client finds and follows through failovers.
func newClient(rawURL string) (redis.UniversalClient, error) {
	u, err := options(rawURL)
	if err != nil {
		return nil, err
	}
	return redis.NewUniversalClient(u), nil
}

// CheckURL reports what is wrong with a log's URL, as Open would, without
// connecting: a command checks its flags before it opens anything.
func CheckURL(rawURL string) error {
	_, err := options(rawURL)
	return err
}

// options are the client options of a log's URL.
func options(rawURL string) (*redis.UniversalOptions, error) {
	var (
		u   *redis.UniversalOptions
		err error
	)
	switch scheme, _, _ := strings.Cut(rawURL, "://"); scheme {
	case SentinelScheme, SentinelTLSScheme:
		u, err = sentinelOptions(rawURL)
	case "redis-cluster", "rediss-cluster":
		return nil, fmt.Errorf("redislog: config: URL: %w: use one server's redis:// URL or a redis-sentinel:// one", ErrClusterUnsupported)
	default:
		u, err = serverOptions(rawURL)
	}
	if err != nil {
		// The URL may hold a password: do not repeat it.
		return nil, fmt.Errorf("redislog: config: URL: %w", err)
	}
	u.DialerRetries = dialAttempts
	return u, nil
}

// serverOptions are the options of one server's URL, as redis.ParseURL
// reads it.
func serverOptions(rawURL string) (*redis.UniversalOptions, error) {
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	u := &redis.UniversalOptions{
		Addrs:                 []string{o.Addr},
		ClientName:            o.ClientName,
		DB:                    o.DB,
		Protocol:              o.Protocol,
		Username:              o.Username,
		Password:              o.Password,
		MaxRetries:            o.MaxRetries,
		MinRetryBackoff:       o.MinRetryBackoff,
		MaxRetryBackoff:       o.MaxRetryBackoff,
		DialTimeout:           o.DialTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: o.ContextTimeoutEnabled,
		PoolFIFO:              o.PoolFIFO,
		PoolSize:              o.PoolSize,
		PoolTimeout:           o.PoolTimeout,
		MinIdleConns:          o.MinIdleConns,
		MaxIdleConns:          o.MaxIdleConns,
		MaxActiveConns:        o.MaxActiveConns,
		ConnMaxIdleTime:       o.ConnMaxIdleTime,
		ConnMaxLifetime:       o.ConnMaxLifetime,
		TLSConfig:             o.TLSConfig,
		DisableIdentity:       o.DisableIdentity,
		IdentitySuffix:        o.IdentitySuffix,
	}
	if o.Network == "unix" {
		u.Dialer = func(ctx context.Context, _, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}
	}
	return u, nil
}

// sentinelOptions are the options of a Sentinel URL:
//
//	redis-sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER_NAME[?db=N&…]
//
// The hosts are the Sentinels; the user and password are the master's and
// its replicas' (as in a server's URL); sentinel_username and
// sentinel_password, if the Sentinels want their own; every other
// parameter is one of a server's URL (dial_timeout, read_timeout, …).
// rediss-sentinel:// speaks TLS to the Sentinels and the servers, each
// checked under the name or address it is dialled by.
func sentinelOptions(rawURL string) (*redis.UniversalOptions, error) {
	pu, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	master := strings.Trim(pu.Path, "/")
	if master == "" || strings.Contains(master, "/") {
		return nil, fmt.Errorf("%s://…/MASTER_NAME: the path must be the master's name, not %q", pu.Scheme, pu.Path)
	}
	var addrs []string
	for h := range strings.SplitSeq(pu.Host, ",") {
		if _, _, err := net.SplitHostPort(h); err != nil {
			return nil, fmt.Errorf("%s://HOST:PORT,…: Sentinel address %q: %w", pu.Scheme, h, err)
		}
		addrs = append(addrs, h)
	}
	q := pu.Query()
	sentinelUser, sentinelPassword := q.Get("sentinel_username"), q.Get("sentinel_password")
	q.Del("sentinel_username")
	q.Del("sentinel_password")
	// The rest reads as one server's URL does, at the first Sentinel's
	// address (not used: the client asks the Sentinels for the master).
	server := url.URL{Scheme: "redis", User: pu.User, Host: addrs[0], RawQuery: q.Encode()}
	if pu.Scheme == SentinelTLSScheme {
		server.Scheme = "rediss"
	}
	u, err := serverOptions(server.String())
	if err != nil {
		return nil, err
	}
	if u.TLSConfig != nil {
		// Each connection checks the name it dials, Sentinel or server.
		u.TLSConfig.ServerName = ""
	}
	u.Addrs, u.MasterName = addrs, master
	u.SentinelUsername, u.SentinelPassword = sentinelUser, sentinelPassword
	return u, nil
}
