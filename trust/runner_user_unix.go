//go:build unix

package trust

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
)

// ExecAsUser runs commands as another user (UID, GID), from root: the
// browsers' NSS databases lie in the user's home, and certutil run as the
// user keeps every file the user's and never follows a link the user made
// with root's rights. Like ExecRunner, a failure's error carries the
// output.
type ExecAsUser struct{ UID, GID int }

// Run implements [Runner].
func (u ExecAsUser) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID)}}
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
