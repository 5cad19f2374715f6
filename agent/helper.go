package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// HelperCommand is the credential helper binary Docker runs for credHelpers
// entries naming HelperName.
const HelperCommand = "docker-credential-" + HelperName

// Helper finds and runs the credential helper, as Docker would.
type Helper interface {
	// Find returns the helper's path on PATH.
	Find() (string, error)
	// Get runs `<path> get` for serverURL.
	Get(ctx context.Context, path, serverURL string) (username string, secret Secret, err error)
}

// ExecHelper runs the helper binary.
type ExecHelper struct {
	LookPath func(string) (string, error)
	// Env is the helper's environment (nil: this process's).
	Env []string
}

// Find implements Helper.
func (h *ExecHelper) Find() (string, error) { return h.LookPath(HelperCommand) }

// Get implements Helper with the credential helper protocol: the server URL
// on stdin, {"ServerURL","Username","Secret"} on stdout; on failure, the
// message on stdout and exit status 1.
func (h *ExecHelper) Get(ctx context.Context, path, serverURL string) (string, Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "get")
	cmd.Env = h.Env
	cmd.Stdin = strings.NewReader(serverURL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stdout.String())
		if msg == "" {
			msg = strings.TrimSpace(stderr.String())
		}
		if len(msg) > 200 || strings.Contains(msg, `"Secret"`) {
			msg = "(output withheld)"
		}
		return "", "", fmt.Errorf("running %s get: %w: %s", path, err, msg)
	}
	var out struct {
		Username string
		Secret   Secret
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return "", "", fmt.Errorf("running %s get: its output is not a credential", path)
	}
	if out.Username == "" || out.Secret == "" {
		return "", "", fmt.Errorf("running %s get: it returned an empty credential", path)
	}
	return out.Username, out.Secret, nil
}

// helperEnv is environ with HOME set to the user's home, so that the helper
// finds the user's credential file as it will when Docker runs it for the
// user (under sudo, this process's HOME may be root's).
func helperEnv(environ []string, u User) []string {
	if environ == nil {
		return nil
	}
	if !u.Sudo {
		return environ
	}
	out := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "HOME=") {
			out = append(out, kv)
		}
	}
	return append(out, "HOME="+u.Home)
}
