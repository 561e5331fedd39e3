package main

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// At the connection cap, a new client is accepted by closing a connection
// that sits idle between requests (a keep-alive), not made to wait for
// the idle timeout; with every connection busy, it waits for one.
func TestConnectionCapReclaimsIdle(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newLimitListener(inner, 2)
	release := make(chan struct{})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				<-release
			}
			io.WriteString(w, "ok")
		}),
		IdleTimeout: time.Hour,
		ConnState:   ln.ConnState,
	}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + inner.Addr().String()

	get := func(c *http.Client, path string) error {
		res, err := c.Get(url + path)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		_, err = io.ReadAll(res.Body)
		return err
	}
	// Two connections of one client, left idle in its pool.
	keep := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	defer keep.CloseIdleConnections()
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			<-gate
			if err := get(keep, "/slow"); err != nil {
				t.Error(err)
			}
		})
	}
	close(gate)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln.mu.Lock()
		open := ln.open
		ln.mu.Unlock()
		if open == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want 2 busy ones", open)
		}
		time.Sleep(time.Millisecond)
	}
	// Both busy: a third client waits for one.
	other := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- get(other, "/") }()
	select {
	case err := <-done:
		t.Fatalf("a third connection was served while two were busy at a cap of 2 (err %v)", err)
	case <-time.After(100 * time.Millisecond): // the claim is that it waits
	}
	close(release)
	wg.Wait() // the two are idle in keep's pool now
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a new client waited behind idle keep-alive connections")
	}
	// And again, a fresh client, with both of keep's connections idle.
	if err := get(&http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}, "/"); err != nil {
		t.Fatalf("a new client at the cap with idle connections: %v", err)
	}
}
