package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/edgecr/edgecr/internal/textsafe"
	"github.com/spf13/cobra"
)

// streams are the command's standard streams; only main touches os.Std*.
type streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// versionString is version, or without -ldflags what the Go toolchain
// stamped: the module version or the VCS revision, so that the device UI
// and `edgecrd version` tell builds apart.
func versionString() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev == "":
		return version
	case modified == "true":
		return "dev-" + rev + "-dirty"
	}
	return "dev-" + rev
}

// defaultDataDir honours $EDGECRD_DATA_DIR.
func defaultDataDir() string {
	if d := os.Getenv("EDGECRD_DATA_DIR"); d != "" {
		return d
	}
	return "/var/lib/edgecrd"
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRootCmd(io streams) *cobra.Command {
	root := &cobra.Command{
		Use:           "edgecrd",
		Short:         "edgecrd runs the edge device's container registry",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	root.SetIn(io.In)
	root.PersistentFlags().String("data-dir", defaultDataDir(), "state directory (CA, certificates, identities, images); $EDGECRD_DATA_DIR")
	root.PersistentFlags().String("storage", "", storageHelp)
	root.AddCommand(newServeCmd(io), newInitCmd(io), newInfoCmd(io), newTokenCmd(io), newClientsCmd(io), newGCCmd(io), newKubeSecretCmd(io), newVersionCmd(io), newBackupCmd(io), newRestoreCmd(io), newSyncCmd(io), newMigrateCmd(io))
	return root
}

func run(ctx context.Context, args []string, io streams) int {
	// Names clients chose and anything else from outside reach the
	// terminal escaped (internal/textsafe).
	io.Out, io.Err = textsafe.NewWriter(io.Out), textsafe.NewWriter(io.Err)
	root := newRootCmd(io)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(io.Err, "edgecrd:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

func dataDir(cmd *cobra.Command) string {
	d, _ := cmd.Flags().GetString("data-dir")
	return d
}
