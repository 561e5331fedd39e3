// Package leakcheck fails a package's tests when goroutines they started
// outlive them: a log, store, server or client a test opened and did not
// close. Every package with tests runs it from its TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m, nil) }
//
// or, with servers to stop after the tests and before the check:
//
//	leakcheck.Main(m, func() { srv.Stop() })
//
// Only _test.go files import it.
package leakcheck

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spoolgw/spool/internal/poll"
)

// Grace is how long the check waits for goroutines to end once the tests
// have: a goroutine told to stop takes a moment to return, and a
// connection a server closed a moment to notice.
const Grace = 5 * time.Second

// ignored are goroutines that live as long as the process whoever starts
// them: they are not the tests' to stop.
var ignored = []string{
	"os/signal.loop",        // signal.Notify's dispatcher
	"runtime.ensureSigM",    // signal masks for signal.Notify
	"testing.runFuzzing",    // the fuzzing engine
	"testing.(*F).Fuzz",     // the fuzzing engine
	"internal/fuzz.",        // the fuzzing engine's workers
	"runtime/pprof.profile", // a CPU profile (go test -cpuprofile)
	// Toxiproxy (run in cmd/spool's test process by TestNetworkFaults)
	// can leave a toxic's pipe, or the link reader that feeds the toxic
	// chain, blocked on a channel send when its proxy stops while a toxic
	// is being added or removed: the library's own goroutines, which its
	// API gives no way to end.
	"github.com/Shopify/toxiproxy/v2/toxics.",
	"github.com/Shopify/toxiproxy/v2.(*ToxicLink).",
}

// Main runs m's tests, then stop (if not nil: servers TestMain started),
// then the check, and exits: with the tests' code, or 1 if they passed
// and goroutines they started are still running Grace later. The check is
// skipped while fuzzing: the engine's goroutines outlive the targets.
func Main(m *testing.M, stop func()) {
	os.Exit(Run(m, stop))
}

// Run is Main without the exit: it returns the code.
func Run(m *testing.M, stop func()) int {
	before := running()
	code := m.Run()
	if stop != nil {
		stop()
	}
	if code != 0 || fuzzing() {
		return code
	}
	if err := Check(before, Grace); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return code
}

// Check waits up to within for every goroutine not in before, but the
// caller and the ignored ones, to end; if some still run, it returns an
// error with their stacks. Idle keep-alive connections of
// http.DefaultTransport are closed first: they are the transport's to
// keep, not a leak.
func Check(before map[string]bool, within time.Duration) error {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	return poll.Wait(within, func() error {
		leaked := leaks(before)
		if len(leaked) == 0 {
			return nil
		}
		return fmt.Errorf("leakcheck: %d goroutines outlived the tests:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	})
}

// running returns the ids of the goroutines running now.
func running() map[string]bool {
	ids := map[string]bool{}
	for _, g := range stacks() {
		ids[id(g)] = true
	}
	return ids
}

// leaks returns the stacks of the goroutines running now that are not in
// before, not the caller's and not ignored.
func leaks(before map[string]bool) []string {
	var out []string
	for i, g := range stacks() {
		if i == 0 || before[id(g)] || isIgnored(g) {
			continue // the first stack is the caller's own
		}
		out = append(out, g)
	}
	return out
}

func isIgnored(stack string) bool {
	for _, s := range ignored {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

// stacks returns the stack of every goroutine, the caller's first.
func stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(strings.TrimSpace(string(buf[:n])), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// id is the "goroutine N" that starts a stack.
func id(stack string) string {
	head, _, _ := strings.Cut(stack, " [")
	return head
}

// fuzzing reports whether the test binary runs the fuzzing engine.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	w := flag.Lookup("test.fuzzworker")
	return (f != nil && f.Value.String() != "") || (w != nil && w.Value.String() == "true")
}
