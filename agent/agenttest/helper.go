package agenttest

import (
	"context"
	"os/exec"
	"sync/atomic"

	"github.com/edgecr/edgecr/agent"
)

// Helper stands for docker-credential-edgecr on PATH: it reads the store
// the agent wrote, as the real helper does (its protocol is tested in the
// agent package and in cmd/docker-credential-edgecr).
type Helper struct {
	Sys     *agent.System
	Missing atomic.Bool // behave as if not on PATH
	Calls   atomic.Int64
}

// Find implements agent.Helper.
func (h *Helper) Find() (string, error) {
	if h.Missing.Load() {
		return "", exec.ErrNotFound
	}
	return "/usr/local/bin/" + agent.HelperCommand, nil
}

// Get implements agent.Helper.
func (h *Helper) Get(_ context.Context, _, serverURL string) (string, agent.Secret, error) {
	h.Calls.Add(1)
	u, p, err := h.Sys.Credentials(h.Sys.CredentialsPath).Get(serverURL)
	return u, agent.Secret(p), err
}
