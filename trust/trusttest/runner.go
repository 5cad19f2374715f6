// Package trusttest provides fakes of the trust package's interfaces and a
// contract test that every trust.Store must pass, for this package's tests
// and for the agent's.
package trusttest

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
)

// Runner is a fake trust.Runner that records every command line and answers
// through Respond (nil: succeed with no output).
type Runner struct {
	// Respond answers one command; it may emulate the tool's effect on a
	// temp root.
	Respond func(name string, args []string) ([]byte, error)
	// Missing names commands that behave as if not installed (the error
	// wraps exec.ErrNotFound, as os/exec's does).
	Missing []string

	mu    sync.Mutex
	calls [][]string
}

// Run implements trust.Runner.
func (r *Runner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if slices.Contains(r.Missing, name) {
		return nil, fmt.Errorf("exec: %q: %w", name, exec.ErrNotFound)
	}
	r.mu.Lock()
	r.calls = append(r.calls, append([]string{name}, args...))
	respond := r.Respond
	r.mu.Unlock()
	if respond == nil {
		return nil, nil
	}
	return respond(name, args)
}

// Calls returns the command lines run so far.
func (r *Runner) Calls() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]string, len(r.calls))
	for i, c := range r.calls {
		out[i] = slices.Clone(c)
	}
	return out
}

// Reset forgets the recorded calls.
func (r *Runner) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
}

// String renders the calls one per line, for test failure messages.
func (r *Runner) String() string {
	var b strings.Builder
	for _, c := range r.Calls() {
		b.WriteString(strings.Join(c, " "))
		b.WriteByte('\n')
	}
	return b.String()
}
