package main

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"time"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/trust"
)

// IOStreams are the command's standard streams; only main touches os.Std*.
type IOStreams struct {
	In          io.Reader
	Out, ErrOut io.Writer
}

// Factory holds what the commands take from the machine, so that tests
// replace it (GitHub CLI style).
type Factory struct {
	IO         IOStreams
	GOOS       string
	Getenv     func(string) string
	Environ    func() []string
	Geteuid    func() int
	LookupUser func(string) (*user.User, error)
	HomeDir    func() (string, error)
	Hostname   func() (string, error)
	LookPath   func(string) (string, error)
	Runner     trust.Runner

	// Elevated reports, on Windows, whether the process token is elevated
	// (UAC); elsewhere the check is Geteuid() == 0.
	Elevated func() bool
	// DesktopUsers returns, on Windows, the account the process runs as and
	// the one logged in at its desktop ("" elsewhere or when unknown).
	DesktopUsers func() (current, desktop string, err error)

	// System builds the agent's view of the machine under root ("" for the
	// live system); newFactory's resolves the user (sudo) and the paths.
	System func(root string, log *slog.Logger) (*agent.System, error)
	// Crash ends the process at once, as SIGKILL would: the
	// EDGECR_TEST_CRASH_AFTER hook.
	Crash func()
}

func newFactory(io IOStreams) *Factory {
	f := &Factory{
		IO:         io,
		GOOS:       runtime.GOOS,
		Getenv:     os.Getenv,
		Environ:    os.Environ,
		Geteuid:    os.Geteuid,
		Elevated:   elevated,
		LookupUser: user.Lookup,
		HomeDir:    os.UserHomeDir,
		Hostname:   os.Hostname,
		LookPath:   exec.LookPath,
		Runner:     trust.ExecRunner{},
		Crash: func() {
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Kill()
			}
			time.Sleep(time.Minute) // the kill is on its way
		},
	}
	f.System = f.realSystem
	f.DesktopUsers = desktopUsers
	return f
}

// realSystem resolves the target user (under sudo: $SUDO_USER) and wires
// the agent for the system under root.
func (f *Factory) realSystem(root string, log *slog.Logger) (*agent.System, error) {
	u, err := agent.ResolveUser(f.GOOS, f.Geteuid(), f.Getenv, f.LookupUser, f.HomeDir)
	if err != nil {
		return nil, err
	}
	if root != "" {
		if root, err = filepath.Abs(root); err != nil {
			return nil, err
		}
	}
	// Under sudo, certutil changes the user's browser databases as the
	// user, so that their files stay theirs.
	var userRunner trust.Runner
	if _, ok := f.Runner.(trust.ExecRunner); ok && u.Sudo {
		userRunner = trust.ExecAsUser{UID: u.UID, GID: u.GID}
	}
	return agent.NewSystem(agent.SystemConfig{
		GOOS:       f.GOOS,
		Root:       root,
		User:       u,
		Getenv:     f.Getenv,
		Environ:    f.Environ(),
		LookPath:   f.LookPath,
		Runner:     f.Runner,
		UserRunner: userRunner,
		Log:        log,
	}), nil
}
