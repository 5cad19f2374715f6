//go:build !unix

package trust

import (
	"context"
	"fmt"
)

// ExecAsUser runs commands as another user; only unix has sudo users.
type ExecAsUser struct{ UID, GID int }

// Run implements [Runner].
func (u ExecAsUser) Run(_ context.Context, name string, _ ...string) ([]byte, error) {
	return nil, fmt.Errorf("running %s as user %d: %w", name, u.UID, ErrUnsupported)
}
