package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"gopkg.in/yaml.v3"
)

func jsonEncode(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

// registryConfig is the distribution configuration edgecrd runs with:
// filesystem storage under the data dir, deletion on, stale uploads
// purged, and no blob descriptor cache: garbage collection (another
// process, or this one) deletes blobs behind distribution's back, and a
// cache that still says "exists" would let a client skip the upload of a
// swept layer and a manifest reference it. On local disk the cache saved a
// stat or two per blob request. Auth is ours (accessControl), so
// distribution's own auth section stays empty. It goes through
// configuration.Parse, which validates it and fills in the defaults the
// handlers rely on (catalog and tag-list page sizes among them); REGISTRY_*
// environment variables override it as they do for distribution itself.
func registryConfig(storageRoot, httpSecret string) (*configuration.Configuration, error) {
	return registryConfigOn(localImageStorage(storageRoot), httpSecret)
}

// registryConfigOn is registryConfig on either storage (imagestore.go):
// the crash-safe filesystem driver on local disk, or on a bucket the
// shared s3 driver instance (s3store.go), with redirects disabled either
// way (clients may not reach the bucket).
func registryConfigOn(st *imageStorage, httpSecret string) (*configuration.Configuration, error) {
	driver, params := st.driverSection()
	doc := map[string]any{
		"version": "0.1",
		"log":     map[string]any{"level": "warn"},
		"storage": map[string]any{
			driver:   params,
			"delete": map[string]any{"enabled": true},
			"maintenance": map[string]any{"uploadpurging": map[string]any{
				"enabled": true, "age": "168h", "interval": "24h", "dryrun": false,
			}},
			"redirect": map[string]any{"disable": true},
		},
		"http": map[string]any{"secret": httpSecret},
		// Non-distributable (foreign) layers are stored as references:
		// their blobs live at their http(s) URLs, not here. Distribution's
		// default allows no URL and refuses such a manifest with a 500.
		"validation": map[string]any{"manifests": map[string]any{"urls": map[string]any{"allow": []string{"^https?://"}}}},
	}
	y, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding registry configuration: %w", err)
	}
	c, err := configuration.Parse(bytes.NewReader(y))
	if err != nil {
		return nil, fmt.Errorf("validating registry configuration: %w", err)
	}
	// Not even REGISTRY_STORAGE_CACHE_* may bring the cache back (see above).
	delete(c.Storage, "cache")
	if !st.local() {
		c.Storage[sharedDriverName]["instance"] = st.d
	}
	return c, nil
}

// newRegistryApp builds distribution's handler. NewApp panics on a bad
// configuration; ours is built in code, but a storage directory that cannot
// be created is still a panic there, so it is turned into an error.
func newRegistryApp(ctx context.Context, log *slog.Logger, storageRoot, httpSecret string) (app *handlers.App, err error) {
	return newRegistryAppOn(ctx, log, localImageStorage(storageRoot), httpSecret)
}

// newRegistryAppOn is newRegistryApp on either storage.
func newRegistryAppOn(ctx context.Context, log *slog.Logger, st *imageStorage, httpSecret string) (app *handlers.App, err error) {
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" {
		// Otherwise distribution's tracing retries a collector on localhost every 5 s.
		os.Setenv("OTEL_TRACES_EXPORTER", "none")
	}
	if st.local() {
		if err := os.MkdirAll(st.root, 0o700); err != nil {
			return nil, fmt.Errorf("creating registry storage %s: %w", st.root, err)
		}
	}
	cfg, err := registryConfigOn(st, httpSecret)
	if err != nil {
		return nil, err
	}
	routeDistributionLogs(log)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("configuring registry engine: %v", r)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

var _ http.Handler = (*handlers.App)(nil)
