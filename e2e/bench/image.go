package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image workload of the comparison: an OCI image of imageLayers layers
// of imageLayerSize random bytes each, pushed and pulled with
// go-containerregistry (crane's library) at its defaults (4 parallel jobs).
const (
	imageLayers    = 10
	imageLayerSize = 512 << 10
)

// benchImage builds the image for seed: distinct seeds share no blob.
func benchImage(seed uint64) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	layers := make([]v1.Layer, imageLayers)
	for i := range layers {
		b := make([]byte, imageLayerSize)
		if _, err := io.ReadFull(newWyrand(seed<<8|uint64(i)), b); err != nil {
			return nil, err
		}
		layers[i] = static.NewLayer(b, types.OCILayer)
	}
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, fmt.Errorf("building the benchmark image: %w", err)
	}
	return img, nil
}

// imageRef names repo:tag on the target's host.
func (c *client) imageRef(repo, tag string) (name.Reference, error) {
	host := strings.TrimPrefix(c.base, "https://")
	ref, err := name.ParseReference(host + "/" + repo + ":" + tag)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference for %s: %w", host, err)
	}
	return ref, nil
}

// remoteOpts are go-containerregistry's options for one operation (what
// the request log, when on, calls it).
func (c *client) remoteOpts(ctx context.Context, op string) []remote.Option {
	var rt http.RoundTripper = c.imageTransport
	if c.requests != nil {
		rt = newRequestLog(rt, c.requests, op)
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(rt),
		remote.WithAuth(&authn.Basic{Username: c.user, Password: c.password}),
	}
}

// pushImage writes img as repo:tag and returns the time it took.
func (c *client) pushImage(ctx context.Context, repo, tag string, img v1.Image) (time.Duration, error) {
	ref, err := c.imageRef(repo, tag)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := remote.Write(ref, img, c.remoteOpts(ctx, "image push")...); err != nil {
		return 0, fmt.Errorf("pushing image %s: %w", ref, err)
	}
	return time.Since(start), nil
}

// pullImage reads repo:tag's manifest, config and every layer (each
// digest-checked by go-containerregistry as it is read).
func (c *client) pullImage(ctx context.Context, repo, tag string) (time.Duration, error) {
	ref, err := c.imageRef(repo, tag)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	img, err := remote.Image(ref, c.remoteOpts(ctx, "image pull")...)
	if err != nil {
		return 0, fmt.Errorf("pulling image %s: %w", ref, err)
	}
	if _, err := img.RawConfigFile(); err != nil {
		return 0, fmt.Errorf("pulling the config of %s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return 0, fmt.Errorf("listing the layers of %s: %w", ref, err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return 0, fmt.Errorf("pulling a layer of %s: %w", ref, err)
		}
		_, err = io.Copy(io.Discard, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, fmt.Errorf("reading a layer of %s: %w", ref, err)
		}
	}
	return time.Since(start), nil
}
