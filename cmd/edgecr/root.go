package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"syscall"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/credhelper"
	"github.com/edgecr/edgecr/internal/textsafe"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the command failed, or status found a broken hop
	exitUsage = 2 // bad flags or arguments
)

// exitErr carries an exit status; silent ones have been reported already.
type exitErr struct {
	code   int
	err    error
	silent bool
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// globalFlags are the flags every command shares.
type globalFlags struct {
	verbose bool
}

func newRootCmd(f *Factory) *cobra.Command {
	var g globalFlags
	root := &cobra.Command{
		Use:   "edgecr",
		Short: "edgecr puts this machine on an edge device's container registry",
		Long: "edgecr joins this machine to an edgecr device's registry (hosts entry, CA trust,\n" +
			"Docker credential helper), checks that setup, and undoes it.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitErr{code: exitUsage, err: err}
	})
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log what is done to stderr")
	root.AddCommand(
		NewCmdJoin(f, &g, nil),
		NewCmdStatus(f, &g, nil),
		NewCmdLeave(f, &g, nil),
		NewCmdLs(f, &g, nil), NewCmdRm(f, &g, nil), NewCmdCp(f, &g, nil),
		NewCmdVersion(f),
	)
	return root
}

// logger discards unless --verbose.
func (g *globalFlags) logger(f *Factory) *slog.Logger {
	if !g.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// run executes the command line and maps errors to exit statuses, in one
// place.
func run(ctx context.Context, args []string, f *Factory) int {
	// What a device or registry said (client IDs, messages, tags) reaches
	// the terminal escaped, whichever path prints it (internal/textsafe).
	f.IO.Out, f.IO.ErrOut = textsafe.NewWriter(f.IO.Out), textsafe.NewWriter(f.IO.ErrOut)
	root := newRootCmd(f)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitErr
	code := exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.silent {
			return code
		}
	}
	fmt.Fprintln(f.IO.ErrOut, "edgecr:", err)
	if hint := hintFor(err); hint != "" {
		fmt.Fprintln(f.IO.ErrOut, hint)
	}
	return code
}

// hintFor is the remediation for the errors a user can act on; the errors
// themselves say what happened.
func hintFor(err error) string {
	switch {
	case errors.Is(err, agent.ErrPinMismatch):
		return "The device did not prove it holds the CA the token was made for: either the URL points at another\n" +
			"device or something is in between. Nothing was sent and nothing was changed. Check the URL and the\n" +
			"token (`edgecrd token create` on the device prints both)."
	case errors.Is(err, agent.ErrUntrustedDevice):
		return "The device asked this machine to trust it for names that are not its own (or could not show it\n" +
			"may not): nothing was changed here. If this is your edgecrd, upgrade it and make a new token."
	case errors.Is(err, agent.ErrTokenExpired), errors.Is(err, agent.ErrTokenUsedUp):
		return "Create a new token on the device: edgecrd token create"
	case errors.Is(err, agent.ErrTokenRejected):
		return "Check that the token was made by this device (edgecrd token ls on the device)."
	case errors.Is(err, agent.ErrInvalidToken):
		return "A join token looks like edgecr1.<pin>.<id>.<secret>; copy it whole from `edgecrd token create`."
	case errors.Is(err, credhelper.ErrMalformed):
		return "Fix the file's JSON (Docker would silently overwrite it), then run the command again."
	case errors.Is(err, fs.ErrPermission):
		return "Run the command as root (sudo edgecr ...)."
	case errors.Is(err, syscall.ECONNREFUSED):
		return refusedHint(err)
	}
	return ""
}

// usageArgs makes a cobra argument check's error a usage error (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &exitErr{code: exitUsage, err: err}
		}
		return nil
	}
}

func checkOutput(o string) error {
	switch o {
	case "", "text", "json":
		return nil
	}
	return usageError("unknown output format %q (want text or json)", o)
}
