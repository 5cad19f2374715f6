package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgecr/edgecr/server"
)

func newClientsCmd(io streams) *cobra.Command {
	cmd := &cobra.Command{Use: "clients", Short: "List and revoke client credentials"}
	cmd.AddCommand(newClientsLsCmd(io), newClientsRevokeCmd(io))
	return cmd
}

func newClientsLsCmd(io streams) *cobra.Command {
	var output, name string
	var limit int
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List joined clients, most recently seen first (revoked last)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			st, err := loadState(cmd)
			if err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("--limit must be 0 (all) or more, got %d", limit)
			}
			var all []server.ClientInfo
			if err := withIdentityCache(st, io.Err, func() (err error) {
				all, err = st.Clients()
				return err
			}); err != nil {
				return err
			}
			cs, _ := server.SelectClients(all, server.ClientQuery{Name: name, Limit: limit})
			if output == "json" {
				return writeJSON(io.Out, cs)
			}
			tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tJOINED\tLAST SEEN\tREVOKED")
			for _, c := range cs {
				seen, revoked := "never", "no"
				if c.LastSeen != nil {
					seen = c.LastSeen.Local().Format(time.RFC3339)
				}
				if c.Revoked {
					revoked = c.RevokedAt.Local().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Name, c.Role, c.Joined.Local().Format(time.RFC3339), seen, revoked)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&name, "name", "", "only clients whose name or id contains this (any case)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many clients (0: all)")
	return cmd
}

func newClientsRevokeCmd(io streams) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a client; the registry refuses it from its next request on (on --storage, every replica within 2 s)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := loadState(cmd)
			if err != nil {
				return err
			}
			if err := st.RevokeClient(args[0], time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(io.Out, "Revoked %s\n", args[0])
			return nil
		},
	}
}
