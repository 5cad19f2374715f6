package testenv

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Skips made through Need, NeedRoot and NeedCommand, for the summary Main
// prints.
var skips struct {
	sync.Mutex
	why map[string]int // short reason -> tests
}

func recordSkip(reason string) {
	skips.Lock()
	defer skips.Unlock()
	if skips.why == nil {
		skips.why = map[string]int{}
	}
	skips.why[reason]++
}

// shortReason is the grouping key of a reason: what precedes its first
// ": ", at most 80 bytes.
func shortReason(reason string) string {
	if k, _, ok := strings.Cut(reason, ": "); ok {
		reason = k
	}
	if len(reason) > 80 {
		reason = reason[:77] + "..."
	}
	return reason
}

// Main runs the tests and, when any skipped for a missing prerequisite,
// prints one line saying how many and why. `go test ./...` hides the
// output of a package that passes, so on Linux the line goes to the go
// command's own standard output (see goCommandOutput), where it shows
// without -v; elsewhere, or when that is not safe, to standard error. A
// package's TestMain is `os.Exit(testenv.Main(m))`.
func Main(m *testing.M) int {
	code := m.Run()
	if line := Summary(packagePath()); line != "" {
		w, ok := goCommandOutput()
		if !ok {
			w = nopCloser{os.Stderr}
		}
		fmt.Fprintln(w, line)
		w.Close()
	}
	return code
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Summary is the skip line for pkg: "pkg: 3 tests skipped, missing
// prerequisites: needs root (2), docker not on PATH (1); ...", or "" when
// nothing was skipped.
func Summary(pkg string) string {
	skips.Lock()
	defer skips.Unlock()
	if len(skips.why) == 0 {
		return ""
	}
	type count struct {
		why string
		n   int
	}
	var cs []count
	total := 0
	for why, n := range skips.why {
		cs = append(cs, count{why, n})
		total += n
	}
	slices.SortFunc(cs, func(a, b count) int {
		return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.why, b.why))
	})
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s (%d)", c.why, c.n)
	}
	tests := "tests"
	if total == 1 {
		tests = "test"
	}
	return fmt.Sprintf("%s: %d %s skipped, missing prerequisites: %s; `go test -v` names them, EDGECR_NO_SKIP=1 fails them",
		pkg, total, tests, strings.Join(parts, ", "))
}

// packagePath is the import path of the package under test.
func packagePath() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Path != "" {
		return strings.TrimSuffix(bi.Path, ".test")
	}
	return strings.TrimSuffix(strings.TrimSuffix(os.Args[0], ".exe"), ".test")
}
