package main

import (
	"fmt"
	"os/exec"
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
			"an existing data dir is kept; flags given explicitly update it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(cmd)
			if err != nil {
				return err
			}
			st, err := server.Ensure(dataDir(cmd), o, time.Now())
			if err != nil {
				return err
			}
			printStart(io.Out, st, dataDir(cmd))
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// printStart tells the operator where the registry is and how to get in.
func printStart(w interface{ Write([]byte) (int, error) }, st *server.State, dir string) {
	fmt.Fprintf(w, "Registry endpoint: %s\n", st.Device.Endpoint())
	fmt.Fprintf(w, "IP addresses:      %v\n", st.Device.IPs)
	fmt.Fprintf(w, "CA fingerprint:    %s\n", st.CA.Fingerprint())
	fmt.Fprintf(w, "CA certificate:    %s\n", st.CAFile())
	fmt.Fprint(w, credentialsLine(dir, exec.LookPath))
}

// credentialsLine says how to read the admin credential. When edgecrd is
// not on PATH (started with go run from a checkout), it says how to run
// info anyway and where installing is explained.
func credentialsLine(dir string, lookPath func(string) (string, error)) string {
	line := fmt.Sprintf("Credentials:       edgecrd info --data-dir %s\n", dir)
	if _, err := lookPath("edgecrd"); err != nil {
		line += fmt.Sprintf("                   (edgecrd is not on PATH: from the source, go run ./cmd/edgecrd info --data-dir %s;\n"+
			"                   README.md says how to install edgecrd, edgecr and docker-credential-edgecr)\n", dir)
	}
	return line
}
