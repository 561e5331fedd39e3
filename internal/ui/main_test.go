package ui_test

import (
	"testing"

	"github.com/spoolgw/spool/internal/leakcheck"
)

// TestMain fails the package if goroutines its tests started outlive
// them; the shared browser is closed (its process ended) before the check.
func TestMain(m *testing.M) { leakcheck.Main(m, closeBrowser) }
