package main

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestDelayProxy echoes through a proxy that holds bytes 20 ms each way:
// every round trip takes at least 40 ms, the bytes arrive whole and in
// order, a dead target closes the client's connection, and close cuts
// connections still open.
func TestDelayProxy(t *testing.T) {
	t.Parallel()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	const delay = 20 * time.Millisecond
	p, err := startDelayProxy(echo.Addr().String(), delay)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("0123456789"), 10_000) // several reads' worth
	for range 3 {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); rtt < 2*delay {
			t.Fatalf("round trip %v, want at least %v", rtt, 2*delay)
		}
		if !bytes.Equal(got, msg) {
			t.Fatal("the bytes came back changed")
		}
	}

	p.close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection outlived the proxy's close")
	}

	dead, err := startDelayProxy(echo.Addr().String(), delay)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.close()
	echo.Close()
	d, err := net.Dial("tcp", dead.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := d.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read through a proxy to nothing: %v, want EOF", err)
	}
}
