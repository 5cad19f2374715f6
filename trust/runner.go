package trust

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs an external command (update-ca-certificates, security,
// launchctl, ...) and returns its combined output. A non-zero exit is an error.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner runs commands with os/exec, as the current user: it never adds
// sudo. The agent is expected to run as root (or Administrator) when it
// changes the system trust store. A failure's error carries the command's
// output.
type ExecRunner struct{}

// Run implements [Runner].
func (ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(out.String()); msg != "" {
			return out.Bytes(), fmt.Errorf("%w: %s", err, msg)
		}
		return out.Bytes(), err
	}
	return out.Bytes(), nil
}

// run runs one command line through r and turns a missing binary into
// ErrToolMissing.
func run(ctx context.Context, r Runner, argv []string) ([]byte, error) {
	out, err := r.Run(ctx, argv[0], argv[1:]...)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return out, fmt.Errorf("running %s: %w (%w)", argv[0], ErrToolMissing, err)
		}
		return out, fmt.Errorf("running %s: %w", strings.Join(argv, " "), err)
	}
	return out, nil
}
