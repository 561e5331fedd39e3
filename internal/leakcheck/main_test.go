package leakcheck

import "testing"

// TestMain runs the check on its own package's tests.
func TestMain(m *testing.M) { Main(m, nil) }
