package main

import (
	"log/slog"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/spf13/cobra"
)

func newServeCmd(io streams) *cobra.Command {
	var f initFlags
	var logFormat string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the registry (creating the device's state on first start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(cmd)
			if err != nil {
				return err
			}
			var h slog.Handler = slog.NewJSONHandler(io.Err, nil)
			if logFormat == "text" {
				h = slog.NewTextHandler(io.Err, nil)
			}
			log := slog.New(h)
			st, err := server.Ensure(dataDir(cmd), o, time.Now())
			if err != nil {
				return err
			}
			srv, err := server.New(cmd.Context(), st, server.Options{Listen: f.listen, Logger: log})
			if err != nil {
				return err
			}
			printStart(io.Out, st, dataDir(cmd))
			return srv.Serve(cmd.Context())
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&logFormat, "log-format", "json", "log format: json or text")
	return cmd
}
