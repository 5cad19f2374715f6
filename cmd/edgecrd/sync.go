package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/edgecr/edgecr/server/mirror"
	"github.com/spf13/cobra"
)

// syncOptions are the flags of `edgecrd sync run`.
type syncOptions struct {
	config string
	rate   string
	rules  []string
	dryRun bool
	output string
}

func newSyncCmd(io streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Copy images from upstream registries into the device (rules of a sync configuration)",
	}
	cmd.AddCommand(newSyncRunCmd(io))
	return cmd
}

func newSyncRunCmd(io streams) *cobra.Command {
	var o syncOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run sync rules now and print what was copied, skipped (already on the device) and failed",
		Long: "run copies the tags the rules of --sync-config select from their upstreams into the device,\n" +
			"each image's blobs and manifests first and its tag last, so that no tag names anything partial.\n" +
			"An image the device already has (the same digest under the tag) is skipped. Safe while serve runs:\n" +
			"runs are serialised per data dir.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			if o.config == "" {
				return errors.New("--sync-config FILE is required")
			}
			rate, err := mirror.ParseRate(o.rate)
			if err != nil {
				return fmt.Errorf("--sync-rate: %w", err)
			}
			cfg, err := mirror.Load(o.config)
			if err != nil {
				return err
			}
			st, err := server.Load(dataDir(cmd))
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(io.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
			rep, err := server.RunSync(cmd.Context(), st, cfg, rate, mirror.RunOptions{Rules: o.rules, DryRun: o.dryRun}, log)
			if err != nil {
				return err
			}
			if o.output == "json" {
				if err := writeJSON(io.Out, rep); err != nil {
					return err
				}
			} else {
				printSyncReport(io.Out, rep)
			}
			if rep.Failed() {
				return &exitError{code: 1, err: fmt.Errorf("%d image(s) and %d rule(s) failed", rep.Count(mirror.OutcomeFailed), len(rep.Errors))}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.config, "sync-config", "", "the sync configuration (YAML: upstreams, rules, pullThrough)")
	fl.StringVar(&o.rate, "sync-rate", "off", "bandwidth per upstream, e.g. 2MiB/s (an upstream's rate: overrides it); off: none")
	fl.StringArrayVar(&o.rules, "rule", nil, "run only this rule (repeatable); default: every rule")
	fl.BoolVar(&o.dryRun, "dry-run", false, "list what would be copied, copy nothing")
	fl.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	return cmd
}

func printSyncReport(w io.Writer, r *mirror.Report) {
	if r.DryRun {
		fmt.Fprintln(w, "Dry run: nothing was copied.")
	}
	for _, it := range r.Items {
		switch it.Outcome {
		case mirror.OutcomeCopied:
			fmt.Fprintf(w, "copied   %s -> %s (%s): %d blob(s), %s sent, %d already here", it.Source, it.Destination, it.Digest, it.Blobs, server.FormatSize(it.Bytes), it.BlobsPresent)
		case mirror.OutcomeSkipped:
			fmt.Fprintf(w, "skipped  %s -> %s (%s): already on the device", it.Source, it.Destination, it.Digest)
		case mirror.OutcomeWouldCopy:
			fmt.Fprintf(w, "would copy %s -> %s (%s)", it.Source, it.Destination, it.Digest)
		default:
			fmt.Fprintf(w, "failed   %s -> %s: %s", it.Source, it.Destination, it.Reason)
		}
		if it.Referrers > 0 {
			fmt.Fprintf(w, ", %d referrer(s)", it.Referrers)
		}
		fmt.Fprintln(w)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "failed   rule %s: %s\n", e.Rule, e.Reason)
	}
	copied, skipped, failed := r.Count(mirror.OutcomeCopied), r.Count(mirror.OutcomeSkipped), r.Count(mirror.OutcomeFailed)+len(r.Errors)
	fmt.Fprintf(w, "Sync took %s: %d copied (%s), %d skipped, %d failed\n", r.Finished.Sub(r.Started).Round(time.Millisecond), copied, server.FormatSize(r.BytesCopied()), skipped, failed)
	if copied == 0 && failed == 0 && !r.DryRun {
		fmt.Fprintln(w, "Nothing to copy: every matching image is on the device already.")
	}
}
