package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/edgecr/edgecr/server"
	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/migrate"
	"github.com/spf13/cobra"
)

// migrateOptions are the flags of `edgecrd migrate`.
type migrateOptions struct {
	to string
}

func newMigrateCmd(io streams) *cobra.Command {
	var o migrateOptions
	cmd := &cobra.Command{
		Use:   "migrate --to s3://BUCKET[/PREFIX]?endpoint=URL&region=R",
		Short: "Copy a single-node device (images and state) into an S3-compatible bucket for replicas",
		Long: "migrate copies the data dir's images and state (CA, certificates, identities, tokens, settings)\n" +
			"into the bucket, where `edgecrd serve --storage` replicas then serve the same device: every image,\n" +
			"client credential and join token keeps working. Credentials come from AWS_ACCESS_KEY_ID and\n" +
			"AWS_SECRET_ACCESS_KEY or the shared credentials file. The data dir is not changed; serve must be\n" +
			"stopped while migrate runs. Blobs are verified by digest, the rest by content. An interrupted\n" +
			"migrate is run again with the same flags: it skips what the bucket already holds and verifies.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if s, _ := cmd.Flags().GetString("storage"); s != "" {
				return errors.New("migrate takes the bucket as --to (and the data dir as --data-dir), not --storage")
			}
			if o.to == "" {
				return errors.New("--to is required: s3://BUCKET[/PREFIX]?endpoint=URL&region=R")
			}
			loc, err := kv.ParseS3URL(o.to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			dir := dataDir(cmd)
			fmt.Fprintf(io.Out, "Migrating %s to %s\n", dir, o.to)
			rep, err := migrate.Run(cmd.Context(), migrate.Options{DataDir: dir, To: loc, Progress: io.Out})
			if err != nil {
				if rep != nil {
					fmt.Fprintln(io.Out, "Interrupted: run the same command again to finish (what is already in the bucket and verified is skipped).")
				}
				return err
			}
			// The URL as the operator wrote it (ParseS3URL refused anything
			// that could be a secret) reads better than the canonical one.
			printMigrated(io, dir, o.to, loc, rep)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.to, "to", "", "the bucket: s3://BUCKET[/PREFIX]?endpoint=URL&region=R (credentials from the AWS environment or credentials file)")
	return cmd
}

func printMigrated(io streams, dir, url string, loc *kv.S3Location, rep *migrate.Report) {
	w := io.Out
	switch {
	case rep.Again:
		fmt.Fprintln(w, "The bucket already held this device's finished migration: verified, and copied what was missing.")
	case rep.Resumed:
		fmt.Fprintln(w, "Resumed an interrupted migration of this device.")
	}
	fmt.Fprintf(w, "Images: %d objects copied (%s), %d already there and verified (%s)", rep.Objects, server.FormatSize(rep.Bytes), rep.Skipped, server.FormatSize(rep.SkippedBytes))
	if rep.Replaced > 0 {
		fmt.Fprintf(w, ", %d replaced", rep.Replaced)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "State: %d keys copied, %d already there and identical", len(rep.StateCopied), len(rep.StateSkipped))
	if len(rep.StateReplaced) > 0 {
		fmt.Fprintf(w, ", %d replaced (%s)", len(rep.StateReplaced), strings.Join(rep.StateReplaced, ", "))
	}
	fmt.Fprintln(w)
	if len(rep.Ignored) > 0 {
		fmt.Fprintf(w, "Not state, not copied: %s\n", strings.Join(rep.Ignored, ", "))
	}
	fmt.Fprintf(w, "Device %s is in bucket %s.\n\n", rep.Device, bucketName(loc))
	fmt.Fprintln(w, "Next, on each node, with the same AWS credentials in its environment (or credentials file):")
	fmt.Fprintf(w, "  edgecrd serve --storage '%s' --ip <this node's address>\n", url)
	fmt.Fprintf(w, "The data dir %s was not changed: keep it (and do not serve it again) until the replicas serve.\n", dir)
}

// bucketName is BUCKET[/PREFIX].
func bucketName(loc *kv.S3Location) string {
	if loc.Prefix == "" {
		return loc.Bucket
	}
	return loc.Bucket + "/" + loc.Prefix
}
