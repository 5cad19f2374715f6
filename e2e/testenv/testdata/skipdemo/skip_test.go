// Package skipdemo is run by testenv's tests as `go test` would run any
// package: two tests skip for a missing prerequisite, one passes.
package skipdemo

import (
	"os"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestNeedsAnAbsentTool(t *testing.T) {
	testenv.NeedCommand(t, "edgecr-no-such-tool", "the demo needs a tool no machine has")
}

func TestNeedsSomethingMissing(t *testing.T) {
	testenv.Need(t, false, "no frobnicator: the demo needs one")
}

func TestRuns(t *testing.T) {}
