package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the default storage driver
)

func jsonEncode(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

// registryConfig is the distribution configuration edgecrd runs with:
// filesystem storage under the data dir, deletion on, an in-memory blob
// descriptor cache, stale uploads purged. Auth is ours (accessControl), so
// distribution's own auth section stays empty.
func registryConfig(storageRoot, httpSecret string) *configuration.Configuration {
	c := &configuration.Configuration{Version: "0.1"}
	c.Log.Level = "warn"
	c.Storage = configuration.Storage{
		"filesystem": configuration.Parameters{"rootdirectory": storageRoot},
		"delete":     configuration.Parameters{"enabled": true},
		"cache":      configuration.Parameters{"blobdescriptor": "inmemory"},
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{
			"enabled": true, "age": "168h", "interval": "24h", "dryrun": false,
		}},
		"redirect": configuration.Parameters{"disable": true},
	}
	c.HTTP.Secret = httpSecret
	return c
}

// newRegistryApp builds distribution's handler. NewApp panics on a bad
// configuration; ours is built in code, but a storage directory that cannot
// be created is still a panic there, so it is turned into an error.
func newRegistryApp(ctx context.Context, log *slog.Logger, storageRoot, httpSecret string) (app *handlers.App, err error) {
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" {
		// Otherwise distribution's tracing retries a collector on localhost every 5 s.
		os.Setenv("OTEL_TRACES_EXPORTER", "none")
	}
	if err := os.MkdirAll(storageRoot, 0o700); err != nil {
		return nil, fmt.Errorf("creating registry storage %s: %w", storageRoot, err)
	}
	routeDistributionLogs(log)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("configuring registry engine: %v", r)
		}
	}()
	return handlers.NewApp(ctx, registryConfig(storageRoot, httpSecret)), nil
}

var _ http.Handler = (*handlers.App)(nil)
