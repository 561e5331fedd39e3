package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"
)

// delayProxy forwards TCP connections on loopback to target and holds
// every chunk of bytes, in each direction, for delay before passing it
// on: the target as if it were delay away (a round trip of twice that),
// with no limit on bandwidth. spool-bench --db-latency puts one in front
// of PostgreSQL, for spool and the baselines alike.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startDelayProxy(target string, delay time.Duration) (*delayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: latency proxy: %w", err)
	}
	p := &delayProxy{ln: ln, target: target, delay: delay, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *delayProxy) addr() string { return p.ln.Addr().String() }

// close stops accepting, cuts every connection and waits for its
// goroutines.
func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *delayProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// track adds cs to the connections close cuts, or cuts them if the proxy
// is closing already.
func (p *delayProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		if p.closed {
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
	}
}

func (p *delayProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *delayProxy) handle(client net.Conn) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close() // the database is down: so is its way in
		return
	}
	p.track(client, server)
	defer p.untrack(client, server)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client) }()
	go func() { defer wg.Done(); p.pipe(client, server) }()
	wg.Wait()
}

// chunk is bytes read from one side, due on the other at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, each read delivered delay after it was read,
// in order. When src ends, dst's write side is closed once everything
// read is delivered; when dst fails, both connections close.
func (p *delayProxy) pipe(dst, src net.Conn) {
	chunks := make(chan chunk, 1024)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{b: buf[:n], due: time.Now().Add(p.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			dst.Close()
			for range chunks { // let the reader end
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite() //nolint:errcheck // the other side may be gone
	}
}

// viaProxy returns the PostgreSQL URL u with its host and port replaced
// by those of a delay proxy in front of them, made on first use and kept
// in proxies.
func viaProxy(proxies map[string]*delayProxy, u string, delay time.Duration) (string, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("bench: latency proxy: %w", err)
	}
	if pu.Host == "" {
		return "", errors.New("bench: latency proxy: the database URL names no host")
	}
	p := proxies[pu.Host]
	if p == nil {
		if p, err = startDelayProxy(pu.Host, delay); err != nil {
			return "", err
		}
		proxies[pu.Host] = p
	}
	pu.Host = p.addr()
	return pu.String(), nil
}
