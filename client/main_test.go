package client_test

import (
	"testing"

	"github.com/spoolgw/spool/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m, nil) }
