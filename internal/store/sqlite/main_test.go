package sqlite

import (
	"testing"

	"github.com/spoolgw/spool/internal/leakcheck"
)

// TestMain fails the package if a test leaves database goroutines behind:
// every store and connection a test opens must be closed.
func TestMain(m *testing.M) { leakcheck.Main(m, nil) }
