package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/credhelper"
	"github.com/edgecr/edgecr/trust"
)

// trustBeforeJoin puts the device CA into the root's trust store under the
// name join uses, as a user who trusted it by hand would have.
func trustBeforeJoin(t *testing.T, e *env) {
	t.Helper()
	st, err := trust.NewStore(trust.Debian, e.root, e.runner)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := st.Install(context.Background(), agent.TrustName(e.dev.Registry()), e.dev.CAPEM); err != nil || !changed {
		t.Fatalf("installing the CA before join: %v, %v", changed, err)
	}
}

// A CA the user trusted before join is theirs: leave keeps it (issue 17,
// defect 5: the Installed flag was written and never read, so leave removed
// it).
func TestLeaveKeepsCATrustedBeforeJoin(t *testing.T) {
	e := newEnv(t, envOptions{})
	trustBeforeJoin(t, e)
	before := e.snapshot()
	e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	if r := e.state().Registries[0].Trust; r == nil || r.Installed {
		t.Fatalf("trust record = %+v, want one that says join did not add the CA", r)
	}
	if !strings.Contains(e.output(), "unchanged: the CA is already installed") {
		t.Errorf("join did not say the CA was there:\n%s", e.output())
	}
	e.leave()
	e.requireSnapshot(before, "after leave")
	if !strings.Contains(e.output(), "left in place: the debian trust store held the CA") {
		t.Errorf("leave did not say it kept the CA:\n%s", e.output())
	}
}

// A failed join's rollback keeps it too.
func TestRollbackKeepsCATrustedBeforeJoin(t *testing.T) {
	e := newEnv(t, envOptions{})
	trustBeforeJoin(t, e)
	cfg := filepath.Join(e.home, ".docker", "config.json")
	before := e.snapshot()
	_, err := e.sys.Join(context.Background(), agent.JoinOptions{
		URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}), Report: e.report,
		AfterStep: func(step string) error {
			if step == agent.StepTrust {
				os.MkdirAll(filepath.Dir(cfg), 0o700)
				return os.WriteFile(cfg, []byte("{\"credsStore\": 42}\n"), 0o600)
			}
			return nil
		},
	})
	if !errors.Is(err, credhelper.ErrMalformed) {
		t.Fatalf("join = %v, want ErrMalformed", err)
	}
	os.RemoveAll(filepath.Dir(cfg))
	e.requireSnapshot(before, "after a rolled-back join")
	if strings.Contains(e.output(), "↺ trust store") {
		t.Errorf("the rollback took the user's CA away:\n%s", e.output())
	}
}

// A CA join added goes with leave, also when join was stopped right after
// recording that it would add it (the record comes first).
func TestLeaveRemovesCAJoinAdded(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := e.snapshot()
	e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	if r := e.state().Registries[0].Trust; r == nil || !r.Installed {
		t.Fatalf("trust record = %+v, want Installed", r)
	}
	e.leave()
	e.requireSnapshot(before, "after leave")
}
