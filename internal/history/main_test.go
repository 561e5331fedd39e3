package history

import (
	"testing"

	"github.com/spoolgw/spool/internal/leakcheck"
)

// TestMain fails the package if a test leaves one of its client goroutines
// running.
func TestMain(m *testing.M) { leakcheck.Main(m, nil) }
