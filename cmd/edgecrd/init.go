package main

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/spf13/cobra"
)

func newInitCmd(io streams) *cobra.Command {
	var f initFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the device's state (CA, server certificate, admin credential) and exit",
		Long: "init creates everything the registry needs in the data dir and exits. It is idempotent:\n" +
			"an existing data dir is kept; flags given explicitly update it. While edgecrd serve runs on the\n" +
			"data dir, init only shows it: flags that would change it are refused (stop serve first).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(cmd)
			if err != nil {
				return err
			}
			loc, err := storageLocation(cmd)
			if err != nil {
				return err
			}
			if loc != nil {
				st, err := ensureShared(cmd, loc, o)
				if err != nil {
					return err
				}
				printStart(io.Out, st)
				return nil
			}
			dir := dataDir(cmd)
			lock, err := server.LockDataDir(dir, "init")
			if errors.Is(err, server.ErrInUse) {
				return initWhileInUse(io, dir, o, err)
			}
			if err != nil {
				return err
			}
			defer lock.Unlock()
			st, err := server.Ensure(dir, o, time.Now())
			if err != nil {
				return err
			}
			printStart(io.Out, st)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// initWhileInUse is init while another process (serve) owns the data dir:
// it may show the device but not change it behind the running server's
// back.
func initWhileInUse(io streams, dir string, o server.InitOptions, inUse error) error {
	changes, err := server.Changes(dir, o, time.Now())
	if err != nil {
		return err
	}
	if len(changes) > 0 {
		return fmt.Errorf("%w: the flags would rewrite %s; stop it first, then run init (or serve) with them", inUse, strings.Join(changes, ", "))
	}
	st, err := server.Load(dir)
	if err != nil {
		return err
	}
	printStart(io.Out, st)
	return nil
}

// printStart tells the operator where the registry is and how to get in.
func printStart(w interface{ Write([]byte) (int, error) }, st *server.State) {
	fmt.Fprintf(w, "Registry endpoint: %s\n", st.Device.Endpoint())
	fmt.Fprintf(w, "IP addresses:      %v\n", st.Device.IPs)
	fmt.Fprintf(w, "CA fingerprint:    %s\n", st.CA.Fingerprint())
	fmt.Fprintf(w, "CA certificate:    %s\n", st.CAFile())
	fmt.Fprint(w, credentialsLine(stateFlag(st), exec.LookPath))
}

// credentialsLine says how to read the admin credential. When edgecrd is
// not on PATH (started with go run from a checkout), it says how to run
// info anyway and where installing is explained.
func credentialsLine(where string, lookPath func(string) (string, error)) string {
	line := fmt.Sprintf("Credentials:       edgecrd info %s\n", where)
	if _, err := lookPath("edgecrd"); err != nil {
		line += fmt.Sprintf("                   (edgecrd is not on PATH: from the source, go run ./cmd/edgecrd info %s;\n"+
			"                   README.md says how to install edgecrd, edgecr and docker-credential-edgecr)\n", where)
	}
	return line
}
