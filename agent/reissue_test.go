package agent_test

import (
	"context"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
)

// A client joined to an edgecrd whose CA predates name constraints: after
// the device re-issues its CA (same key, new pin), leave still reaches the
// device through the CA copy it holds and revokes itself.
func TestLeaveRevokesOnADeviceWhoseCAWasReissued(t *testing.T) {
	e := newEnv(t, envOptions{device: agenttest.DeviceOptions{UnconstrainedCA: true}})
	oldPin := e.dev.Pin
	if _, err := e.sys.Join(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}),
		Name: "laptop", Report: e.report, AllowUnconstrainedCA: true}); err != nil {
		t.Fatalf("join: %v\n%s", err, e.output())
	}
	e.dev.ReissueCA(t, agenttest.DeviceOptions{})
	if e.dev.Pin == oldPin {
		t.Fatal("the pin did not change")
	}
	res := e.leave()
	if len(res) != 1 || !res[0].Revoked || !res[0].Done {
		t.Fatalf("leave = %+v\n%s", res, e.output())
	}
	for _, c := range e.dev.Clients() {
		if !c.Revoked {
			t.Errorf("client %s is not revoked on the device", c.ID)
		}
	}
}
