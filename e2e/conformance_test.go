package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
)

// conformanceRun runs the OCI distribution-spec conformance suite
// (EDGECR_CONFORMANCE names its binary; .ci/run builds it) against a fresh
// edgecrd over TLS with auth, and returns its summary counts.
func conformanceRun(t *testing.T, name string, env []string) (counts map[string]int, out string, err error) {
	t.Helper()
	suite := conformanceSuite(t)
	d := startDevice(t, "")
	results := filepath.Join(t.TempDir(), name)
	if a := os.Getenv("EDGECR_ARTIFACTS"); a != "" {
		results = filepath.Join(a, "conformance-"+name)
	}
	cmd := exec.Command(suite)
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+d.addr,
		"OCI_TLS=enabled",
		"OCI_USERNAME="+d.info.Username,
		"OCI_PASSWORD="+d.info.Password,
		"OCI_RESULTS_DIR="+results,
		"SSL_CERT_FILE="+d.info.CAFile,
	)
	cmd.Env = append(cmd.Env, env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	out = buf.String()
	counts = map[string]int{}
	for _, k := range []string{"Pass", "FAIL", "Skip", "Error", "Total"} {
		m := regexp.MustCompile(`(?m)^\s*` + k + `\.+:\s+(\d+)\s*$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("conformance %s: no %s count in its output:\n%s", name, k, out)
		}
		counts[k], _ = strconv.Atoi(m[1])
	}
	t.Logf("conformance %s: total %d, pass %d, fail %d, skip %d, error %d (results in %s)",
		name, counts["Total"], counts["Pass"], counts["FAIL"], counts["Skip"], counts["Error"], results)
	return counts, out, err
}

// conformanceModule is the pinned OCI conformance suite (a main package).
const conformanceModule = "github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111"

var (
	conformanceOnce sync.Once
	conformanceBin  string
	conformanceErr  error
)

// conformanceSuite returns $EDGECR_CONFORMANCE, or builds the pinned suite
// from the module proxy once per test run.
func conformanceSuite(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("EDGECR_CONFORMANCE"); p != "" {
		return p
	}
	conformanceOnce.Do(func() {
		gobin := filepath.Join(os.TempDir(), "edgecr-e2e-conformance")
		cmd := exec.Command("go", "install", conformanceModule)
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=")
		cmd.Dir = gobin
		os.MkdirAll(gobin, 0o755)
		if out, err := cmd.CombinedOutput(); err != nil {
			conformanceErr = fmt.Errorf("go install %s: %v\n%s", conformanceModule, err, out)
			return
		}
		conformanceBin = filepath.Join(gobin, "conformance"+exe())
	})
	need(t, conformanceErr == nil, fmt.Sprintf("cannot build the OCI conformance suite (set EDGECR_CONFORMANCE to a built one): %v", conformanceErr))
	return conformanceBin
}

// TestConformance is the acceptance gate: the suite's full default run
// (referrers API, subjects, sha512, non-distributable layers included:
// server/referrers*.go, server/sha512.go) with zero failures.
func TestConformance(t *testing.T) {
	counts, out, err := conformanceRun(t, "full", nil)
	if err != nil || counts["FAIL"] != 0 || counts["Error"] != 0 || counts["Pass"] == 0 {
		t.Fatalf("conformance failed (%v):\n%s", err, out)
	}
}
