package testenv_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// goTestDemo runs `go test` on the demo package as a user would (no -v,
// output to a pipe) and returns what the go command printed.
func goTestDemo(t *testing.T, env ...string) (string, error) {
	t.Helper()
	goBin := testenv.NeedCommand(t, "go", "runs go test on a demo package")
	cmd := exec.Command(goBin, "test", "-count=1", "./testdata/skipdemo")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EDGECR_NO_SKIP=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// `go test` without -v hides a passing package's output, skips included:
// testenv.Main still prints one line of what was skipped and why.
func TestSkipSummaryShowsWithoutVerbose(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the go command's output is reached through /proc: elsewhere the line goes to stderr (go test -v)")
	}
	if _, err := os.Stat(filepath.Join("testdata", "skipdemo")); err != nil {
		t.Fatal(err)
	}
	out, err := goTestDemo(t)
	if err != nil {
		t.Fatalf("go test: %v\n%s", err, out)
	}
	want := "e2e/testenv/testdata/skipdemo: 2 tests skipped, missing prerequisites: edgecr-no-such-tool not on PATH (1), no frobnicator (1); `go test -v` names them, EDGECR_NO_SKIP=1 fails them\n"
	if !strings.Contains(out, want) || strings.Count(out, "skipped") != 1 {
		t.Errorf("go test printed:\n%s\nwant the line\n%s", out, want)
	}
	if strings.Contains(out, "--- SKIP") {
		t.Errorf("go test without -v printed the skips themselves:\n%s", out)
	}

	// With EDGECR_NO_SKIP=1 the same tests fail, with no summary.
	out, err = goTestDemo(t, "EDGECR_NO_SKIP=1")
	if err == nil || !strings.Contains(out, "prerequisite missing and EDGECR_NO_SKIP=1: no frobnicator") || strings.Contains(out, "tests skipped") {
		t.Errorf("EDGECR_NO_SKIP=1: %v\n%s", err, out)
	}
}

// Under -json the line is one of the package's output events, never raw
// text in the stream.
func TestSkipSummaryUnderJSON(t *testing.T) {
	goBin := testenv.NeedCommand(t, "go", "runs go test on a demo package")
	cmd := exec.Command(goBin, "test", "-count=1", "-json", "./testdata/skipdemo")
	cmd.Env = slicesWithout(os.Environ(), "EDGECR_NO_SKIP=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go test -json: %v\n%s", err, out)
	}
	found := false
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(l, "{") {
			t.Fatalf("not JSON: %q", l)
		}
		found = found || strings.Contains(l, "2 tests skipped")
	}
	if !found {
		t.Errorf("no summary in the events:\n%s", out)
	}
}

func slicesWithout(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}
