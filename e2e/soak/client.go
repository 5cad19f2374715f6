package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// client is go-containerregistry against the device, without retries: an
// operation in a kill window fails fast and is accounted as such.
type client struct {
	dev *device
	tr  *http.Transport
}

func newClient(dev *device) *client {
	return &client{dev: dev, tr: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: dev.roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 8,
	}}
}

func (c *client) opts(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithAuth(&authn.Basic{Username: c.dev.user, Password: c.dev.password}),
		remote.WithTransport(c.tr),
		remote.WithContext(ctx),
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1}),
		// One blob at a time: a push refused at the quota then abandons no
		// other upload session. The server removes a session whose body
		// was cut (TestCutUploadSessionGoesAtOnce), but one a client
		// opened and never wrote to still counts against its limit until
		// it expires idle.
		remote.WithJobs(1),
	}
}

func (c *client) ref(repo, tagOrDigest string) (name.Reference, error) {
	sep := ":"
	if len(tagOrDigest) > 7 && tagOrDigest[:7] == "sha256:" {
		sep = "@"
	}
	return name.ParseReference(c.dev.addr + "/" + repo + sep + tagOrDigest)
}

func (c *client) push(ctx context.Context, repo, tag string, img v1.Image) error {
	ref, err := c.ref(repo, tag)
	if err != nil {
		return err
	}
	return remote.Write(ref, img, c.opts(ctx)...)
}

// pull fetches repo:ref and checks every blob against its digest; it
// returns the manifest's digest.
func (c *client) pull(ctx context.Context, repo, ref string) (string, error) {
	r, err := c.ref(repo, ref)
	if err != nil {
		return "", err
	}
	img, err := remote.Image(r, c.opts(ctx)...)
	if err != nil {
		return "", err
	}
	if err := validate.Image(img); err != nil {
		return "", fmt.Errorf("image %s:%s does not verify: %w", repo, ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// tag points repo:tag at the manifest d of the same repository.
func (c *client) tag(ctx context.Context, repo, tag, d string) error {
	src, err := c.ref(repo, d)
	if err != nil {
		return err
	}
	desc, err := remote.Get(src, c.opts(ctx)...)
	if err != nil {
		return err
	}
	dst, err := name.NewTag(c.dev.addr + "/" + repo + ":" + tag)
	if err != nil {
		return err
	}
	return remote.Tag(dst, desc, c.opts(ctx)...)
}

func (c *client) delete(ctx context.Context, repo, ref string) error {
	r, err := c.ref(repo, ref)
	if err != nil {
		return err
	}
	return remote.Delete(r, c.opts(ctx)...)
}

// tags lists repo's tags (none for an unknown repository).
func (c *client) tags(ctx context.Context, repo string) ([]string, error) {
	r, err := name.NewRepository(c.dev.addr + "/" + repo)
	if err != nil {
		return nil, err
	}
	tags, err := remote.List(r, c.opts(ctx)...)
	if err != nil {
		if strings.Contains(err.Error(), "NAME_UNKNOWN") {
			return nil, nil
		}
		return nil, err
	}
	return tags, nil
}

// repairs is the server's edgecr_tag_repairs_total by reason (nil when
// it cannot be read).
func (c *client) repairs(ctx context.Context) map[string]int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.dev.addr+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := (&http.Client{Transport: c.tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^edgecr_tag_repairs_total\{reason="([a-z_]+)"\} (\d+)`).FindAllSubmatch(b, -1) {
		v, _ := strconv.Atoi(string(m[2]))
		out[string(m[1])] = v
	}
	return out
}

// authOK reports whether GET /v2/ with the admin's credential answers 200.
func (c *client) authOK(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.dev.addr+"/v2/", nil)
	if err != nil {
		return false
	}
	req.SetBasicAuth(c.dev.user, c.dev.password)
	resp, err := (&http.Client{Transport: c.tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
