package ui_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spoolgw/spool/internal/poll"
	"github.com/spoolgw/spool/internal/testservers"
)

// The browser the tests drive: one headless Chromium for the package,
// started by the first test that needs it, a fresh browser context (no
// shared storage) per test, ended by closeBrowser from TestMain.
var browser struct {
	once   sync.Once
	ctx    context.Context // the browser's; tabs are made from it
	cancel func()
	err    error
}

// chromiumNames are the executables tried, in order.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"}

// findChromium returns the path of Chromium, or an error wrapping
// testservers.ErrMissing.
func findChromium() (string, error) {
	if p := os.Getenv("SPOOL_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, n := range chromiumNames {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("chromium (tried %s; apt-get install chromium): %w", strings.Join(chromiumNames, ", "), testservers.ErrMissing)
}

func startBrowser() {
	path, err := findChromium()
	if err != nil {
		browser.err = err
		return
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(alloc)
	browser.ctx = ctx
	browser.cancel = func() { cancelBrowser(); cancelAlloc() }
	// Start the process now: a failure is the tests' precondition.
	if err := chromedp.Do(ctx); err != nil {
		browser.cancel()
		browser.err = fmt.Errorf("start %s: %w", path, err)
	}
}

// closeBrowser ends the browser process, if the tests started one.
func closeBrowser() {
	if browser.cancel != nil {
		browser.cancel()
	}
}

// tab opens a page of its own browser context (storage of its own) in
// the shared browser: it skips the test without Chromium, or fails it
// when SPOOL_REQUIRE_SERVERS=1, as the integration tests do without their
// servers.
func tab(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(startBrowser)
	if browser.err != nil {
		if errors.Is(browser.err, testservers.ErrMissing) && !testservers.Required() {
			t.Skipf("browser test skipped: %v (or set SPOOL_REQUIRE_SERVERS=1 to make this a failure)", browser.err)
		}
		t.Fatalf("browser: %v", browser.err)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// run runs actions in the tab within the deadline, failing the test
// with what it was doing.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, what, chromedp.Steps(actions...))
}

// get runs one action that answers a value, within the deadline.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v\nthe page at %s reads:\n%s", what, err, page(ctx, "location.href"), page(ctx, "document.body.innerText"))
	}
	return v
}

// page evaluates js in the page for a failure's message, whatever the
// deadline of ctx.
func page(ctx context.Context, js string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return s
}

// text returns the text of the first element sel matches (waiting for
// it to be there).
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return strings.TrimSpace(get(t, ctx, "read "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	return get(t, ctx, "evaluate "+js, chromedp.Evaluate[T](js))
}

// untilText waits until the text of sel is want.
func untilText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	poll.UntilNil(t, within, sel+" to read "+want, func() error {
		c, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		s, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			return err
		}
		if s = strings.TrimSpace(s); s != want {
			return fmt.Errorf("it reads %q", s)
		}
		return nil
	})
}

// screenshot writes a PNG of the whole page as name: into
// SPOOL_SCREENSHOTS (docs/screenshots when regenerating them), else into
// the test's temporary directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SPOOL_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}
