package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// segments lists the log's segment files, oldest first.
func segments(t *testing.T, dataDir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dataDir, "log", "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segment in %s: %v", dataDir, err)
	}
	return segs
}

// fill writes n rows through spool and kills it, leaving their records in
// the log's last segment.
func fill(t *testing.T, dataDir string, n int) {
	t.Helper()
	p := start(t, dataDir)
	for i := range n {
		res, err := http.Post(p.url+"/v1/tables/instruments", "application/json", strings.NewReader(fmt.Sprintf(`{"code":"c%d","name":"n"}`, i)))
		if err != nil || res.StatusCode != http.StatusCreated {
			t.Fatalf("write %d: %v %v", i, err, res.Status)
		}
		res.Body.Close()
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.done <- nil
}

func logCheck(t *testing.T, dataDir string) (string, error) {
	t.Helper()
	out, err := exec.Command(binary, "log", "check", "--data-dir", dataDir).CombinedOutput()
	return string(out), err
}

// A log cut mid-record is reported as a torn tail and repaired at start; a
// flipped byte in the middle is refused at start with the segment and
// offset, and `spool log check` reports both.
func TestTornAndCorruptLog(t *testing.T) {
	t.Parallel()
	torn := t.TempDir()
	fill(t, torn, 20)
	segs := segments(t, torn)
	last := segs[len(segs)-1]
	info, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, info.Size()-7); err != nil {
		t.Fatal(err)
	}
	out, err := logCheck(t, torn)
	if err != nil || !strings.Contains(out, "torn tail") {
		t.Fatalf("log check of a torn log: %v\n%s", err, out)
	}
	p := start(t, torn)
	waitDrained(t, p)
	if !strings.Contains(p.stderr.String(), "torn") {
		t.Errorf("start did not report the torn tail:\n%s", p.stderr)
	}

	corrupt := t.TempDir()
	fill(t, corrupt, 20)
	seg := segments(t, corrupt)[0]
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0xFF
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = logCheck(t, corrupt)
	if err == nil || !strings.Contains(out, "CORRUPT") || !strings.Contains(out, filepath.Base(seg)) {
		t.Fatalf("log check of a corrupt log: %v\n%s", err, out)
	}
	cmd := exec.Command(binary, "serve", "--data-dir", corrupt, "--listen", freeAddr(t))
	o, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(o), filepath.Base(seg)) || !strings.Contains(string(o), "offset") {
		t.Fatalf("start on a corrupt log must fail naming segment and offset: %v\n%s", err, o)
	}
}

// The dlq command works a running spool's dead letters: list, show, retry,
// drop.
func TestDLQCommand(t *testing.T) {
	t.Parallel()
	p := start(t, t.TempDir())
	post := func(body string) {
		res, err := http.Post(p.url+"/v1/transactions", "application/json", strings.NewReader(body))
		if err != nil || res.StatusCode != http.StatusAccepted {
			t.Fatalf("post: %v %v", err, res.Status)
		}
		res.Body.Close()
	}
	post(`{"operations":[{"op":"insert","table":"instruments","values":{"code":"x","name":"one"}}]}`)
	post(`{"operations":[{"op":"insert","table":"instruments","values":{"code":"x","name":"two"}}]}`)
	dlq := func(args ...string) (string, error) {
		out, err := exec.Command(binary, append([]string{"dlq"}, append(args, "--url", p.url)...)...).CombinedOutput()
		return string(out), err
	}
	var out string
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err = dlq("list", "--table", "instruments")
		if err == nil && strings.Contains(out, `"transaction"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dlq list: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var list struct {
		DeadLetters []struct {
			Transaction struct{ ID string } `json:"transaction"`
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.DeadLetters) != 1 {
		t.Fatalf("dlq list: %v\n%s", err, out)
	}
	id := list.DeadLetters[0].Transaction.ID
	if out, err := dlq("show", id); err != nil || !strings.Contains(out, "UNIQUE") {
		t.Fatalf("dlq show: %v\n%s", err, out)
	}
	fixed := filepath.Join(t.TempDir(), "fixed.json")
	os.WriteFile(fixed, []byte(`{"operations":[{"op":"insert","table":"instruments","values":{"code":"y","name":"two"}}]}`), 0o644)
	if out, err := dlq("retry", id, "--file", fixed); err != nil || !strings.Contains(out, `"retry_of"`) {
		t.Fatalf("dlq retry: %v\n%s", err, out)
	}
	// The dead letter is retried once its retry is applied.
	for deadline := time.Now().Add(10 * time.Second); ; {
		out, err := dlq("show", id)
		if err == nil && strings.Contains(out, `"retried_as"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dlq show after the retry: no retried_as within 10 s: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := dlq("drop", id); err == nil || !strings.Contains(out, "retried already") {
		t.Fatalf("dropping a retried dead letter must fail saying so: %v\n%s", err, out)
	}
	if out, err := dlq("show", "not-an-id"); err == nil || !strings.Contains(out, "400") {
		t.Fatalf("dlq show of a bad id: %v\n%s", err, out)
	}
}
