package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/edgecr/edgecr/server/kv"
	"github.com/spf13/cobra"
)

// storageHelp is --storage's help: where a device on shared storage keeps
// everything, and where the credentials come from (never a flag).
const storageHelp = "keep images and all state in an S3-compatible bucket instead of the data dir, e.g. " +
	"s3://BUCKET[/PREFIX]?endpoint=https://minio.lan:9000&region=us-east-1 (replicas share it); " +
	"credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the shared credentials file"

// storageLocation is --storage parsed, nil without it. It and an explicit
// --data-dir exclude each other: with --storage nothing is kept on local
// disk.
func storageLocation(cmd *cobra.Command) (*kv.S3Location, error) {
	raw, _ := cmd.Flags().GetString("storage")
	if raw == "" {
		return nil, nil
	}
	if cmd.Flags().Changed("data-dir") {
		return nil, errors.New("--storage and --data-dir exclude each other: with --storage the device's state and images are in the bucket, not in a data dir")
	}
	return kv.ParseS3URL(raw)
}

// loadState loads the device from --storage or the data dir.
func loadState(cmd *cobra.Command) (*server.State, error) {
	loc, err := storageLocation(cmd)
	if err != nil {
		return nil, err
	}
	if loc != nil {
		return server.LoadS3(cmd.Context(), loc)
	}
	return server.Load(dataDir(cmd))
}

// ensureShared is init and serve's first step with --storage: no data dir
// lock (replicas share the bucket; its conditional writes keep them apart).
func ensureShared(cmd *cobra.Command, loc *kv.S3Location, o server.InitOptions) (*server.State, error) {
	return server.EnsureS3(cmd.Context(), loc, o, time.Now())
}

// stateFlag is how a later command names the same state.
func stateFlag(st *server.State) string {
	if loc := st.S3(); loc != nil {
		return "--storage '" + loc.String() + "'"
	}
	return "--data-dir " + st.Dir
}

// errNoBucketBackup is backup and restore with --storage.
var errNoBucketBackup = errors.New("backup and restore work on a data dir; a device on --storage keeps its images and state in the bucket: " +
	"back the bucket up with the object store's own tools instead (bucket versioning or replication, mc mirror, rclone sync), " +
	"or move a data-dir device into a bucket with edgecrd migrate")

// withIdentityCache runs read (a listing of clients or tokens) with the
// state's identity cache kept in the user's cache directory: on a bucket
// a run then reads only the shards and tokens that changed since the last
// (server.State.LoadIdentityCache). A cache that cannot be read or written
// is a warning, never a failure; a data dir has none.
func withIdentityCache(st *server.State, errOut io.Writer, read func() error) error {
	// A bad identity snapshot in the bucket is read around, with a warning.
	st.SetLogger(slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelWarn})))
	dir, err := os.UserCacheDir()
	path := ""
	if err == nil {
		path = st.IdentityCachePath(dir)
	}
	if path != "" {
		if err := st.LoadIdentityCache(path); err != nil {
			fmt.Fprintf(errOut, "warning: %v (reading everything from the bucket instead)\n", err)
		}
	}
	if err := read(); err != nil {
		return err
	}
	if path != "" {
		if err := st.SaveIdentityCache(path); err != nil {
			fmt.Fprintf(errOut, "warning: %v\n", err)
		}
	}
	return nil
}
