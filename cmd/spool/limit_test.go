package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
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
	var slow atomic.Int32 // requests held in the handler
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				slow.Add(1)
				<-release
			}
			io.WriteString(w, "ok")
		}),
		IdleTimeout: time.Hour,
		ConnState:   ln.ConnState,
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	var releaseOnce sync.Once
	defer func() {
		releaseOnce.Do(func() { close(release) }) // a failed test leaves no handler waiting
		srv.Close()
		<-served
	}()
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
	// Both requests in the handler: two connections busy. (The count of
	// open slots is not the sign: Serve's next Accept holds one while it
	// waits for a connection.)
	deadline := time.Now().Add(10 * time.Second)
	for slow.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in the handler, want 2", slow.Load())
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
	releaseOnce.Do(func() { close(release) })
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

// At the cap with every connection busy, Close ends an Accept waiting for
// a slot, so that a server shutting down there is not held by its Serve.
func TestConnectionCapCloseEndsWaitingAccept(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newLimitListener(inner, 1)
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	busy, err := ln.Accept() // the one slot, taken
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if c != nil {
			c.Close()
		}
		accepted <- err
	}()
	select {
	case err := <-accepted:
		t.Fatalf("Accept returned at the cap with the one connection busy: %v", err)
	case <-time.After(50 * time.Millisecond): // it waits, as it must
	}
	ln.Close()
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waits for a slot after Close")
	}
}
