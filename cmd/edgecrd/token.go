package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/spf13/cobra"
)

func newTokenCmd(io streams) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and remove join tokens"}
	cmd.AddCommand(newTokenCreateCmd(io), newTokenLsCmd(io), newTokenRmCmd(io))
	return cmd
}

// tokenCreated is the contract of `edgecrd token create -o json`.
type tokenCreated struct {
	Token       string      `json:"token"`
	ID          string      `json:"id"`
	Role        server.Role `json:"role"`
	Uses        int         `json:"uses"`
	Expires     time.Time   `json:"expires"`
	JoinCommand string      `json:"joinCommand"`
	// With --print-join-command: the one-line installs for a client that
	// has nothing installed yet.
	InstallCommand        string `json:"installCommand,omitempty"`        // Linux, macOS
	InstallCommandWindows string `json:"installCommandWindows,omitempty"` // elevated PowerShell
}

func newTokenCreateCmd(io streams) *cobra.Command {
	var ttl time.Duration
	var uses int
	var role, output string
	var printInstall bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a join token and print the edgecr join command that uses it",
		Long: `Create a join token and print the edgecr join command that uses it.

The join line runs edgecr join through sudo unless the user is root, so it
works on both. With --print-join-command it also prints one line for
Linux/macOS (curl piped to sh; the script uses sudo unless run as root) and one for an elevated Windows PowerShell that install the agent
from this device (edgecrd serve --dist-dir) and join. Both accept only this
device's server key (curl --pinnedpubkey, and the same SHA-256 of the key's
SubjectPublicKeyInfo in PowerShell), since the client does not trust the
device's CA yet. The serving certificate is renewed with a new key every year
(30 days before it expires) and reissued when --name/--domain/--ip change, so
that pin is for first contact only: print a fresh line after a renewal. The
join that follows checks the device against the CA pin inside the token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			r, err := server.ParseRole(role)
			if err != nil {
				return err
			}
			st, err := loadState(cmd)
			if err != nil {
				return err
			}
			tk, token, err := st.CreateToken(server.TokenOptions{TTL: ttl, Uses: uses, Role: r}, time.Now())
			if err != nil {
				return err
			}
			jc, err := st.JoinCommands(token, printInstall)
			if err != nil {
				return err
			}
			out := tokenCreated{Token: token, ID: tk.ID, Role: tk.Role, Uses: tk.Uses, Expires: tk.Expires,
				JoinCommand: jc.Join, InstallCommand: jc.Install, InstallCommandWindows: jc.InstallWindows}
			if output == "json" {
				return writeJSON(io.Out, out)
			}
			fmt.Fprintf(io.Out, "Join token %s (%s, %d use(s), expires %s):\n\n  %s\n\nRun on the client (the $(…) prefix is sudo unless you are root; on Windows,\nin PowerShell run as administrator, leave it out):\n\n  %s\n",
				tk.ID, tk.Role, tk.Uses, tk.Expires.Local().Format(time.RFC3339), token, out.JoinCommand)
			if out.InstallCommand != "" {
				fmt.Fprintf(io.Out, "\nOr, on a client without edgecr (needs edgecrd serve --dist-dir), Linux/macOS:\n\n  %s\n", out.InstallCommand)
			}
			if out.InstallCommandWindows != "" {
				fmt.Fprintf(io.Out, "\nWindows, in Windows PowerShell 5.1 (powershell.exe, not pwsh) run as administrator:\n\n  %s\n", out.InstallCommandWindows)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	cmd.Flags().IntVar(&uses, "uses", 1, "how many clients may join with it")
	cmd.Flags().StringVar(&role, "role", "push", "role of the clients that join with it: push or pull")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVar(&printInstall, "print-join-command", false,
		"also print one-line installs (Linux/macOS, Windows) pinned to the server key; the key changes at the yearly certificate renewal")
	return cmd
}

func newTokenLsCmd(io streams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List join tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			st, err := loadState(cmd)
			if err != nil {
				return err
			}
			var tks []*server.Token
			if err := withIdentityCache(st, io.Err, func() (err error) {
				tks, err = st.Tokens()
				return err
			}); err != nil {
				return err
			}
			if output == "json" {
				type row struct {
					ID      string      `json:"id"`
					Role    server.Role `json:"role"`
					Uses    int         `json:"uses"`
					Used    int         `json:"used"`
					Created time.Time   `json:"created"`
					Expires time.Time   `json:"expires"`
					Expired bool        `json:"expired"`
				}
				rows := []row{}
				for _, t := range tks {
					rows = append(rows, row{t.ID, t.Role, t.Uses, t.Used, t.Created, t.Expires, !time.Now().Before(t.Expires)})
				}
				return writeJSON(io.Out, rows)
			}
			tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tROLE\tUSED\tEXPIRES\tSTATE")
			for _, t := range tks {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.Role, t.Used, t.Uses, t.Expires.Local().Format(time.RFC3339), t.State(time.Now()))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newTokenRmCmd(io streams) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID",
		Short: "Remove a join token (clients that joined with it stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := loadState(cmd)
			if err != nil {
				return err
			}
			if err := st.RemoveToken(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(io.Out, "Removed token %s\n", args[0])
			return nil
		},
	}
}
