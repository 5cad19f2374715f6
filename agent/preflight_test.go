package agent_test

import (
	"context"
	"crypto/sha1"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
)

// macSecurity answers launchctl and security as a Mac with an empty System
// keychain does in the given launchd session (launchctl(1) managername:
// "Aqua" at the desktop, "Background" over SSH); add-trusted-cert succeeds
// only in Aqua, and fails elsewhere with what macOS 11+ prints there
// (mkcert#415, actions/runner-images#4519).
func macSecurity(session string) *trusttest.Runner {
	return &trusttest.Runner{Respond: func(name string, args []string) ([]byte, error) {
		switch line := name + " " + strings.Join(args, " "); {
		case line == "launchctl managername":
			return []byte(session + "\n"), nil
		case strings.HasPrefix(line, "security find-certificate "):
			return nil, nil
		case strings.HasPrefix(line, "security add-trusted-cert ") && session == "Aqua":
			return nil, nil
		case strings.HasPrefix(line, "security add-trusted-cert "):
			msg := "SecTrustSettingsSetTrustSettings: The authorization was denied since no user interaction was possible."
			return []byte(msg + "\n"), errors.New("exit status 1: " + msg)
		}
		return nil, errors.New("unexpected " + name)
	}}
}

// joinUpToTrust joins and stops the join (which rolls back) right after
// the trust step; nil when it got there.
func joinUpToTrust(e *env) error {
	stop := errors.New("stop after trust")
	_, err := e.sys.Join(context.Background(), agent.JoinOptions{
		URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}), Report: e.report,
		AfterStep: func(step string) error {
			if step == agent.StepTrust {
				return stop
			}
			return nil
		},
	})
	if errors.Is(err, stop) {
		return nil
	}
	if err == nil {
		return errors.New("the join did not stop after the trust step")
	}
	return err
}

func useMacStore(t *testing.T, e *env, r trust.Runner) {
	e.sys.OpenTrust = func(trust.Kind) (trust.Store, trust.Kind, error) {
		s, err := trust.NewStore(trust.MacOS, "/", r, trust.WithTempDir(t.TempDir()))
		return s, trust.MacOS, err
	}
}

// Issue 17, defect 3: over SSH (no desktop session) a macOS join stops
// before the token is spent, and says where to run it; the old join spent
// the token, then rolled everything back when add-trusted-cert failed.
func TestJoinMacOSWithoutDesktopSessionSpendsNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	useMacStore(t, e, macSecurity("Background"))
	before := e.snapshot()
	_, err := e.join(e.dev.Token(agenttest.TokenOptions{}))
	if !errors.Is(err, trust.ErrNoDesktopSession) || !strings.Contains(err.Error(), "not spent") || !strings.Contains(err.Error(), "Terminal") {
		t.Fatalf("join = %v, want ErrNoDesktopSession saying the token was not spent and where to run it", err)
	}
	if e.dev.JoinHits() != 0 || len(e.dev.Clients()) != 0 {
		t.Errorf("the token was spent: %d joins", e.dev.JoinHits())
	}
	e.requireSnapshot(before, "after a refused join")
}

// At the desktop, the user is told of the dialog before it appears.
func TestJoinMacOSWarnsBeforeTheDialog(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := macSecurity("Aqua")
	useMacStore(t, e, r)
	if err := joinUpToTrust(e); err != nil {
		t.Fatalf("join = %v\n%s", err, e.output())
	}
	out := e.output()
	note, installed := strings.Index(out, trust.KeychainDialogNote), strings.Index(out, "trust store: installed the CA")
	if note < 0 || installed < 0 || note > installed {
		t.Errorf("the dialog note does not come before the install:\n%s", out)
	}
}

// --dry-run says the same, without spending anything either.
func TestPlanJoinMacOSWithoutDesktopSession(t *testing.T) {
	e := newEnv(t, envOptions{})
	useMacStore(t, e, macSecurity("Background"))
	plan, err := e.sys.PlanJoin(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}), Report: e.report})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(toJSON(t, plan), "no desktop session") {
		t.Errorf("the plan does not warn of the missing desktop session:\n%s", toJSON(t, plan))
	}
	if e.dev.JoinHits() != 0 {
		t.Error("the token was spent")
	}
}

// Issue 17 risk: each desktop VM found gets its own step (colima restart,
// the podman machine copy); the generic Docker Desktop line is not said to
// a colima user.
func TestJoinTellsDesktopVMsWhatToDo(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	e.sys.GOOS = "darwin" // paths stay the Debian root's: only the notices change
	e.sys.DetectDesktopVMs = func() []trust.DesktopVM { return []trust.DesktopVM{trust.Colima, trust.PodmanMachine} }
	res := e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	notes := strings.Join(res.Notices, "\n")
	caFile := filepath.Join(e.root, "etc/docker/certs.d", e.dev.Registry(), "ca.crt")
	for _, want := range []string{"`colima restart`", "podman machine ssh", "< " + caFile} {
		if !strings.Contains(notes, want) {
			t.Errorf("notices lack %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "restart Docker Desktop") {
		t.Errorf("a colima user is told to restart Docker Desktop:\n%s", notes)
	}
}

// A CA the keychain trusts already (pushed by MDM, or an earlier join)
// needs no dialog: a join without a desktop session goes through, and
// leaves the CA it did not add.
func TestJoinMacOSHeadlessWithCATrustedAlready(t *testing.T) {
	e := newEnv(t, envOptions{})
	block, _ := pem.Decode(e.dev.CAPEM)
	thumb := fmt.Sprintf("%X", sha1.Sum(block.Bytes)) //nolint:gosec // the keychain's thumbprint
	r := &trusttest.Runner{Respond: func(name string, args []string) ([]byte, error) {
		switch line := name + " " + strings.Join(args, " "); {
		case line == "launchctl managername":
			return []byte("Background\n"), nil
		case strings.HasPrefix(line, "security find-certificate "):
			// security(1) find-certificate -a -Z prints each match's hashes.
			return []byte("SHA-256 hash: 00\nSHA-1 hash: " + thumb + "\nkeychain: \"/Library/Keychains/System.keychain\"\n"), nil
		case strings.HasPrefix(line, "security verify-cert "):
			return []byte("...certificate verification successful.\n"), nil
		}
		return nil, errors.New("unexpected " + name + " " + strings.Join(args, " "))
	}}
	useMacStore(t, e, r)
	if err := joinUpToTrust(e); err != nil {
		t.Fatalf("headless join with the CA trusted already = %v, want it to get past the trust step\n%s", err, e.output())
	}
	if strings.Contains(e.output(), trust.KeychainDialogNote) {
		t.Errorf("a dialog was announced for a CA trusted already:\n%s", e.output())
	}
	// The rollback of the stopped join leaves the CA it did not add.
	for _, c := range r.Calls() {
		if line := strings.Join(c, " "); strings.Contains(line, "add-trusted-cert") || strings.Contains(line, "remove-trusted-cert") || strings.Contains(line, "delete-certificate") {
			t.Errorf("join changed a CA the keychain trusted already: %s", line)
		}
	}
}
