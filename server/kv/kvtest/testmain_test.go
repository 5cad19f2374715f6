package kvtest

import (
	"os"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// TestMain prints one line of the tests skipped for a missing prerequisite,
// which go test ./... shows even without -v.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
