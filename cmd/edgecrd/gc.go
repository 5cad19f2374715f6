package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/spf13/cobra"
)

// gcOptions are the flags of `edgecrd gc`.
type gcOptions struct {
	dryRun, deleteUntagged bool
	grace                  time.Duration
	output                 string
}

func newGCCmd(io streams) *cobra.Command {
	var o gcOptions
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove unreferenced blobs (and untagged manifests) to reclaim space; safe while serve runs",
		Long: "gc removes blobs no manifest references and, with --delete-untagged, manifests no tag reaches\n" +
			"(children of a tagged index stay). Nothing younger than --grace is removed, so pushes running\n" +
			"at the same time are safe. Uploads idle for more than max(--grace, 24h) are purged.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			if o.grace < 0 {
				return fmt.Errorf("invalid --grace %s: must not be negative", o.grace)
			}
			if o.grace < minScheduledGrace && !o.dryRun {
				fmt.Fprintf(io.Err, "warning: --grace %s is short: content a push running now is about to reference may be removed\n", o.grace)
			}
			st, err := loadState(cmd)
			if err != nil {
				return err
			}
			rep, err := st.CollectGarbage(cmd.Context(), server.GCOptions{
				DryRun: o.dryRun, DeleteUntagged: o.deleteUntagged, Grace: o.grace, Trigger: "command",
				Logger: slog.New(slog.NewTextHandler(io.Err, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if rep != nil {
				if o.output == "json" {
					if werr := writeJSON(io.Out, rep); werr != nil {
						return werr
					}
				} else {
					printGCReport(io.Out, rep)
				}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.dryRun, "dry-run", false, "report what would be removed, remove nothing")
	fl.BoolVar(&o.deleteUntagged, "delete-untagged", false, "also remove manifests no tag reaches (directly or through a tagged index)")
	fl.DurationVar(&o.grace, "grace", server.DefaultGCGrace, "never remove anything younger than this")
	fl.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	return cmd
}

func printGCReport(w io.Writer, r *server.GCReport) {
	verb := "Removed"
	if r.DryRun {
		verb = "Would remove"
		fmt.Fprintln(w, "Dry run: nothing was changed.")
		for _, m := range r.DeletedManifests {
			fmt.Fprintf(w, "would delete manifest %s@%s\n", m.Repository, m.Digest)
		}
		for _, b := range r.DeletedBlobs {
			fmt.Fprintf(w, "would delete blob %s (%s)\n", b.Digest, server.FormatSize(b.Size))
		}
	}
	fmt.Fprintf(w, "Garbage collection took %s (%d repositories, %d manifests, %d blobs referenced)\n",
		r.Duration().Round(time.Millisecond), r.Repositories, r.Manifests, r.BlobsMarked)
	fmt.Fprintf(w, "%s %s (%d bytes): %d blob(s), %d untagged manifest(s), %d layer link(s), %d stale upload(s)\n",
		verb, server.FormatSize(r.ReclaimedBytes), r.ReclaimedBytes, r.BlobsDeleted, r.ManifestsDeleted, r.LayerLinksDeleted, r.UploadsPurged)
	if r.SkippedYoung > 0 || r.Restored > 0 {
		fmt.Fprintf(w, "Kept %d unreferenced blob(s) younger than %s; put back %d item(s) used during the run\n", r.SkippedYoung, r.Grace, r.Restored)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}
