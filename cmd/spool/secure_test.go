package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/syncbuf"
)

// Without credentials spool refuses to listen beyond loopback, unless
// --insecure-no-auth says so.
func TestNonLoopbackRefusedWithoutCredentials(t *testing.T) {
	t.Parallel()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	out, err := exec.Command(binary, "serve", "--data-dir", t.TempDir(), "--listen", "0.0.0.0:"+port).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a loopback address and no credentials") {
		t.Fatalf("a wildcard --listen without credentials must be refused naming why: %v\n%s", err, out)
	}
	p := &proc{cmd: exec.Command(binary, "serve", "--data-dir", t.TempDir(), "--listen", "0.0.0.0:"+port, "--insecure-no-auth"),
		url: "http://127.0.0.1:" + port, stderr: &syncbuf.Buffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	for deadline := time.Now().Add(20 * time.Second); ; {
		res, err := http.Get(p.url + "/health")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool --insecure-no-auth did not start: %v\n%s", err, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(p.stderr.String(), "--insecure-no-auth") {
		t.Fatalf("--insecure-no-auth must warn:\n%s", p.stderr)
	}
	p.stop(t)
}

// token runs spool token and returns the secret and the tokens file entry.
func token(t *testing.T, name, scopes string) (secret, entry string) {
	t.Helper()
	out, err := exec.Command(binary, "token", "--name", name, "--scopes", scopes).Output()
	if err != nil {
		t.Fatalf("spool token: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "secret: "); ok {
			secret = v
		}
		if v, ok := strings.CutPrefix(l, "entry:  "); ok {
			entry = v
		}
	}
	if secret == "" || entry == "" || strings.Contains(entry, secret) {
		t.Fatalf("spool token printed %q", out)
	}
	return secret, entry
}

// selfSigned writes a certificate for 127.0.0.1 and its key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "spool test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// A spool with tokens over TLS: 401 without a token, the token's writes
// recorded under its name, TLS below 1.2 refused, and SIGHUP reloading the
// tokens file: a broken file keeps the old tokens, a new one replaces them.
func TestTokensTLSAndReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ops, opsEntry := token(t, "ops", "read:*,write:observations")
	next, nextEntry := token(t, "next", "read:*,write:*")
	tokens := filepath.Join(dir, "tokens.json")
	write := func(s string) {
		if err := os.WriteFile(tokens, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"tokens":[` + opsEntry + `]}`)
	certFile, keyFile, pool := selfSigned(t, dir)
	p := start(t, filepath.Join(dir, "data"), "--tokens", tokens, "--tls-cert", certFile, "--tls-key", keyFile)
	base := strings.Replace(p.url, "http://", "https://", 1)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	do := func(secret, method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	if code, _ := do("", "POST", "/v1/tables/observations", `{"target":"M31"}`); code != 401 {
		t.Fatalf("no token: %d; want 401", code)
	}
	code, m := do(ops, "POST", "/v1/tables/observations", `{"target":"M31"}`)
	if code != 201 {
		t.Fatalf("the ops token writing observations: %d %v", code, m)
	}
	if code, st := do(ops, "GET", "/v1/transactions/"+m["transaction_id"].(string)+"?wait=applied&timeout=10s", ""); code != 200 || st["principal"] != "token:ops" {
		t.Fatalf("status: %d %v; want principal token:ops", code, st)
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if res, err := old.Get(base + "/health"); err == nil {
		res.Body.Close()
		t.Fatal("TLS 1.1 must be refused")
	}

	hangup := func(want string) {
		t.Helper()
		n := strings.Count(p.stderr.String(), want)
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); strings.Count(p.stderr.String(), want) == n; {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after SIGHUP:\n%s", want, p.stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	write(`{"tokens":[{"name":"broken"`)
	hangup("credentials not reloaded")
	if code, _ := do(ops, "GET", "/v1/tables/observations", ""); code != 200 {
		t.Fatalf("after a failed reload the old token must stay: %d", code)
	}
	write(`{"tokens":[` + nextEntry + `]}`)
	hangup("credentials reloaded")
	if code, _ := do(ops, "GET", "/v1/tables/observations", ""); code != 401 {
		t.Fatalf("a token removed by the reload: %d; want 401", code)
	}
	if code, _ := do(next, "POST", "/v1/tables/instruments", `{"code":"n","name":"x"}`); code != 201 {
		t.Fatalf("a token added by the reload: %d", code)
	}
	for _, secret := range []string{ops, next} {
		if strings.Contains(p.stderr.String(), secret) {
			t.Fatal("a secret is in the log")
		}
	}
	p.stop(t)
}
