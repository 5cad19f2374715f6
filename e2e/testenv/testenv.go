// Package testenv lets tests state what they need from the machine (root, a
// tool, a Docker daemon, a browser). Where it is missing the test skips with
// the reason, except when EDGECR_NO_SKIP=1: CI sets it, and there a missing
// prerequisite is a failure, so CI can never pass by skipping.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing prerequisites fail tests.
func Strict() bool { return os.Getenv("EDGECR_NO_SKIP") == "1" }

// Need skips (or, in CI, fails) t unless ok.
func Need(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if Strict() {
		t.Fatalf("prerequisite missing and EDGECR_NO_SKIP=1: %s", reason)
	}
	recordSkip(shortReason(reason))
	t.Skip(reason)
}

// NeedRoot needs uid 0.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	Need(t, os.Geteuid() == 0, "needs root: "+why)
}

// NeedCommand needs name on PATH and returns its path.
func NeedCommand(t testing.TB, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, err == nil, name+" not on PATH: "+why)
	return p
}

// MachineLock is the lock every test that changes (or checks that nothing
// changed) this machine's system files holds: /etc/hosts, the trust store,
// Docker's config, network namespaces. go test runs packages in parallel;
// the lock serialises those tests across test processes.
const MachineLock = "/run/lock/edgecr-e2e-root.lock"
