package main

import (
	"context"
	"fmt"

	"github.com/edgecr/edgecr/agent"
	"github.com/spf13/cobra"
)

// LeaveOptions are `edgecr leave`'s flags and dependencies.
type LeaveOptions struct {
	IO      IOStreams
	Factory *Factory
	Global  *globalFlags

	Registry string
	Root     string
	Output   string
}

// NewCmdLeave builds `edgecr leave`.
func NewCmdLeave(f *Factory, g *globalFlags, runF func(context.Context, *LeaveOptions) error) *cobra.Command {
	o := &LeaveOptions{IO: f.IO, Factory: f, Global: g}
	cmd := &cobra.Command{
		Use:   "leave [REGISTRY]",
		Short: "Undo `edgecr join` and revoke this client on the device",
		Long: `Revoke this client on the device (when it is reachable; otherwise say how an admin
revokes it), then undo what join did, in reverse: Docker config, credential, container
runtimes, OS trust store, hosts entry. Without REGISTRY (host:port) it leaves every
joined registry. Running it again is harmless.`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if len(args) == 1 {
				o.Registry = args[0]
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return leaveRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Root, "root", "", "system root the join was made under")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

func leaveRun(ctx context.Context, o *LeaveOptions) error {
	f := o.Factory
	if err := needRoot(f, o.Root, "leave"); err != nil {
		return err
	}
	sys, err := f.System(o.Root, o.Global.logger(f))
	if err != nil {
		return err
	}
	progress := o.IO.Out
	if o.Output == "json" {
		progress = o.IO.ErrOut
	}
	rs, err := sys.Leave(ctx, agent.LeaveOptions{Registry: o.Registry, Report: func(ev agent.Event) { fmt.Fprintln(progress, ev) }})
	if o.Output == "json" && rs != nil {
		if werr := writeJSON(o.IO.Out, rs); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	if o.Output == "json" {
		return nil
	}
	if len(rs) == 0 {
		fmt.Fprintln(o.IO.Out, "Not joined to any registry: nothing to do.")
		return nil
	}
	for _, r := range rs {
		fmt.Fprintf(o.IO.Out, "Left %s.\n", r.Registry)
	}
	return nil
}
