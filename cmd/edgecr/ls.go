package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/edgecr/edgecr/agent"
	"github.com/spf13/cobra"
)

// LsOptions are `edgecr ls`'s flags and dependencies.
type LsOptions struct {
	IO      IOStreams
	Factory *Factory
	Global  *globalFlags
	imageFlags

	Arg string // REPO, REGISTRY (host:port, or ending in "/"), or "" (the joined device)
}

// NewCmdLs builds `edgecr ls`.
func NewCmdLs(f *Factory, g *globalFlags, runF func(context.Context, *LsOptions) error) *cobra.Command {
	o := &LsOptions{IO: f.IO, Factory: f, Global: g}
	cmd := &cobra.Command{
		Use:   "ls [REPO | REGISTRY]",
		Short: "List a repository's tags, or a registry's repositories",
		Long: `With REPO, list its tags: digest, media type and size (manifest, config and layers;
for an index, the index and each platform, shared blobs counted once), and how many
referrers (signatures, SBOMs, attestations) of which artifact type it has.
Without an argument, or with a joined registry (host:port) or any registry written
with a trailing "/" (ghcr.io/), list the repositories. An edgecr device lists its
repositories to its admin role only: a client joined with the push or pull role is
refused, and can list the tags of a repository it knows.

REPO is short (tools/busybox: on the device this client joined) or full
(ecr.box1.internal:31001/tools/busybox; docker.io/library/alpine).`,
		Example: `  edgecr ls tools/busybox
  edgecr ls ecr.box1.internal:31001/tools/busybox -o json
  edgecr ls --username admin --password-stdin < admin-password`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return err
			}
			if len(args) == 1 {
				o.Arg = args[0]
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return lsRun(cmd.Context(), o)
		},
	}
	o.add(cmd, "for the registry listed")
	return cmd
}

func lsRun(ctx context.Context, o *LsOptions) error {
	im, err := o.images(o.Factory, o.Global)
	if err != nil {
		return err
	}
	reg, isRegistry, err := im.RegistryArg(o.Arg)
	if err != nil {
		return err
	}
	if isRegistry {
		repos, err := im.ListRepositories(ctx, reg)
		if err != nil {
			cmdline := strings.TrimSpace("edgecr ls " + o.Arg)
			return o.hint(err, "List the tags of a repository instead: edgecr ls REPO. To list the repositories as the device admin:\n"+
				"  "+cmdline+" --username admin --password-stdin   "+adminPasswordHint)
		}
		if o.Output == "json" {
			return writeJSON(o.IO.Out, repos)
		}
		if len(repos) == 0 {
			fmt.Fprintf(o.IO.Out, "No repositories on %s.\n", reg)
		}
		for _, r := range repos {
			fmt.Fprintln(o.IO.Out, r.Repository)
		}
		return nil
	}
	repo, err := im.Repository(o.Arg)
	if err != nil {
		return err
	}
	tags, err := im.ListTags(ctx, repo)
	if err != nil {
		return o.hint(err, "")
	}
	if o.Output == "json" {
		if tags == nil {
			tags = []agent.TagInfo{}
		}
		return writeJSON(o.IO.Out, tags)
	}
	if len(tags) == 0 {
		fmt.Fprintf(o.IO.Out, "%s has no tags.\n", repo)
		return nil
	}
	tw := tabwriter.NewWriter(o.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TAG\tDIGEST\tTYPE\tSIZE")
	for _, t := range tags {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Tag, t.Digest, mediaTypeName(t.MediaType), humanBytes(t.Size))
		for _, p := range t.Platforms {
			plat := p.Platform
			if plat == "" {
				plat = "(no platform)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", plat, p.Digest, mediaTypeName(p.MediaType), humanBytes(p.Size))
		}
		if len(t.Referrers) > 0 {
			n := 0
			for _, c := range t.Referrers {
				n += c.Count
			}
			fmt.Fprintf(tw, "  referrers %d: %s\n", n, artifactCounts(t.Referrers))
		}
	}
	return tw.Flush()
}
