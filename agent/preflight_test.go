package agent_test

import (
	"context"
	"errors"
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
	if !errors.Is(err, stop) {
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
