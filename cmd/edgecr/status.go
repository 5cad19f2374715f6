package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/edgecr/edgecr/agent"
	"github.com/spf13/cobra"
)

// StatusOptions are `edgecr status`'s flags and dependencies.
type StatusOptions struct {
	IO      IOStreams
	Factory *Factory
	Global  *globalFlags

	Root   string
	Output string
}

// NewCmdStatus builds `edgecr status`.
func NewCmdStatus(f *Factory, g *globalFlags, runF func(context.Context, *StatusOptions) error) *cobra.Command {
	o := &StatusOptions{IO: f.IO, Factory: f, Global: g}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Check every hop between this machine and each joined registry",
		Long: `Check, for each joined registry: the join completed, the hosts entry, that the name
resolves, the CA in the OS trust store and in each container runtime, TLS with the
system roots, Docker's config, the credential helper on PATH and its credential, and
that the registry accepts it. Each broken hop says how to fix it. The exit status is 1
when a hop is broken or nothing is joined, 0 otherwise.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return statusRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Root, "root", "", "system root the join was made under")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

func statusRun(ctx context.Context, o *StatusOptions) error {
	sys, err := o.Factory.System(o.Root, o.Global.logger(o.Factory))
	if err != nil {
		return err
	}
	rs, err := sys.Status(ctx)
	if errors.Is(err, agent.ErrNotJoined) && o.Output == "json" {
		if werr := writeJSON(o.IO.Out, []agent.RegistryStatus{}); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	allOK := true
	for _, r := range rs {
		allOK = allOK && r.OK()
	}
	if o.Output == "json" {
		if err := writeJSON(o.IO.Out, rs); err != nil {
			return err
		}
	} else {
		for i, r := range rs {
			if i > 0 {
				fmt.Fprintln(o.IO.Out)
			}
			state := "ok"
			if !r.OK() {
				state = "BROKEN"
			}
			fmt.Fprintf(o.IO.Out, "%s (%s): %s\n", r.Registry, r.ClientID, state)
			for _, c := range r.Checks {
				mark := "✓"
				if !c.OK {
					mark = "✗"
				}
				fmt.Fprintf(o.IO.Out, "  %s %s: %s\n", mark, c.Name, c.Detail)
				if !c.OK && c.Fix != "" {
					fmt.Fprintf(o.IO.Out, "      fix: %s\n", c.Fix)
				}
				if c.Warning != "" {
					fmt.Fprintf(o.IO.Out, "      warning: %s\n", c.Warning)
				}
			}
		}
	}
	if !allOK {
		return &exitErr{code: exitError, err: errors.New("a hop is broken"), silent: true}
	}
	return nil
}
