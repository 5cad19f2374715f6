package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
	"github.com/edgecr/edgecr/e2e/benchutil/s3bucket"
)

// The fleet GC benchmark (-gc-fleet N, issue 14): N tags in N/10
// repositories, each tag its own image of 3 layers and a config (5 blobs
// with the manifest: 50,000 blobs at 10,000 tags), written into the data
// dir's storage layout before serve starts (pushing 50,000 blobs would
// take longer than the collection). Half the images are then deleted
// through the registry (by digest and by tag, alternately), and `edgecrd gc
// --delete-untagged --grace 1h` runs next to the serving registry while a
// pusher keeps pushing new images: the seeded content is two hours old, so
// the collector takes the deleted images and leaves the new pushes, which
// must all succeed and all resolve afterwards. Reported: the time of the
// collection, the peak RSS of the gc process and of serve, and the pushes.

// gcFleetResult is what -gc-fleet measures.
type gcFleetResult struct {
	tags, repos, blobs    int
	seedTime              time.Duration
	deleted               int
	deleteTime            time.Duration
	dryWall, wall         time.Duration
	dry, real             gcJSON
	gcPeakRSS, dryPeakRSS int64
	servePeakRSS          int64
	pushes, pushFailures  int
	pushErr               string
	pushesVerified        int
	keptVerified, kept    int
	grace                 string
}

func runGCFleet(ctx context.Context, o options, tags int, args []string, stdout, stderr io.Writer) int {
	if tags < 10 {
		fmt.Fprintln(stderr, "bench: -gc-fleet takes the number of tags, at least 10")
		return 2
	}
	p, err := parseProto(o.proto)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	started, load := time.Now(), benchutil.LoadAverage()
	r, err := benchGCFleet(ctx, o.edgecrd, o.storage, p, tags, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	runHead(stdout, started, load, args)
	fmt.Fprintf(stdout, "- Storage: %s; `gc --grace %s`\n\n", storageName(o.storage), r.grace)
	fmt.Fprintln(stdout, "| Store | Deleted (through the registry) | `gc --dry-run` wall (collector), peak RSS | `gc` wall (collector), peak RSS | Deleted blobs / manifests | serve peak RSS | Pushes during gc: ok / failed, resolving after | Kept images intact |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|")
	fmt.Fprintf(stdout, "| %d tags in %d repositories, %d blobs (seeded in %s) | %d images in %s | %s (%s), %s | %s (%s), %s | %d / %d | %s | %d / %d, %d | %d of %d |\n",
		r.tags, r.repos, r.blobs, r.seedTime.Round(time.Second), r.deleted, r.deleteTime.Round(time.Millisecond),
		r.dryWall.Round(time.Millisecond), secs(r.dry.DurationSeconds), approxBytes(r.dryPeakRSS),
		r.wall.Round(time.Millisecond), secs(r.real.DurationSeconds), approxBytes(r.gcPeakRSS),
		r.real.BlobsDeleted, r.real.ManifestsDeleted, approxBytes(r.servePeakRSS),
		r.pushes, r.pushFailures, r.pushesVerified, r.keptVerified, r.kept)
	if r.pushErr != "" {
		fmt.Fprintf(stdout, "\nFirst push failure: %s\n", r.pushErr)
	}
	if r.pushFailures > 0 || r.pushesVerified != r.pushes || r.keptVerified != r.kept {
		return 1
	}
	return 0
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

// fleetImage is one seeded image.
type fleetImage struct {
	repo, tag, digest string
	blobs             []string
}

func benchGCFleet(ctx context.Context, bin, storage string, p proto, tags int, progress io.Writer) (res gcFleetResult, err error) {
	tmp, bin, err := benchDir(ctx, "edgecr-bench-gcfleet-", bin, progress)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	var b *s3bucket.Bucket
	var write func(p string, data []byte) error
	if storage == "s3" {
		// The seeded objects are as old as the seeding (an object's
		// LastModified cannot be set): the grace is a minute, and the
		// collection waits until the seeding is that old.
		if b, err = s3bucket.Start(ctx, tmp, "edgecr-bench"); err != nil {
			return res, err
		}
		defer b.Stop()
		res.grace = "1m"
		write = func(p string, data []byte) error { return b.Put(ctx, "docker/registry/v2/"+p, data) }
	} else {
		res.grace = "1h"
		dataDir := filepath.Join(tmp, "edgecrd-data") // as startEdgecrd lays it out
		if out, err := exec.CommandContext(ctx, bin, "init", "--data-dir", dataDir, "--name", "bench").CombinedOutput(); err != nil {
			return res, fmt.Errorf("edgecrd init: %w: %s", err, out)
		}
		old := time.Now().Add(-2 * time.Hour)
		v2 := filepath.Join(dataDir, "registry", "docker", "registry", "v2")
		write = func(p string, data []byte) error {
			full := filepath.Join(v2, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(full, data, 0o644); err != nil {
				return err
			}
			return os.Chtimes(full, old, old)
		}
	}
	fmt.Fprintf(progress, "seeding %d tags\n", tags)
	t0 := time.Now()
	imgs, err := seedFleet(tags, write)
	if err != nil {
		return res, err
	}
	seeded := time.Now()
	res.seedTime = seeded.Sub(t0)
	res.tags, res.repos, res.blobs = tags, (tags+9)/10, 5*tags

	e, err := startEdgecrdOn(ctx, bin, tmp, b)
	if e != nil {
		defer func() { err = errors.Join(err, e.stop()) }()
	}
	if err != nil {
		return res, err
	}
	c := newClient(target{base: e.base, user: e.user, password: e.password, roots: e.roots}, p)
	defer c.close()

	fmt.Fprintf(progress, "deleting %d images\n", tags/2)
	t0 = time.Now()
	for i := 0; i < len(imgs); i += 2 {
		ref := imgs[i].tag
		if i%4 == 0 {
			ref = imgs[i].digest
		}
		resp, err := c.do(ctx, http.MethodDelete, c.base+"/v2/"+imgs[i].repo+"/manifests/"+ref, nil, 0, http.StatusAccepted)
		if err != nil {
			return res, err
		}
		drain(resp)
		res.deleted++
	}
	res.deleteTime = time.Since(t0)

	gc := func(args ...string) (gcJSON, time.Duration, int64, error) {
		return gcOn(ctx, bin, e.where, e.env, res.grace, args...)
	}
	if b != nil {
		if wait := time.Until(seeded.Add(65 * time.Second)); wait > 0 {
			fmt.Fprintf(progress, "waiting %s until the seeded objects are past the grace\n", wait.Round(time.Second))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
	}
	fmt.Fprintln(progress, "edgecrd gc --dry-run")
	if res.dry, res.dryWall, res.dryPeakRSS, err = gc("--dry-run"); err != nil {
		return res, err
	}
	fmt.Fprintf(progress, "edgecrd gc --dry-run: %s\n", res.dryWall.Round(time.Millisecond))

	// Pushes while the collection runs: one image after another, each of
	// a new layer, a config and a manifest.
	fmt.Fprintln(progress, "edgecrd gc, pushing meanwhile")
	stop := make(chan struct{})
	var pushed []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tag := fmt.Sprintf("during%d", i)
			if err := pushSmallImage(ctx, c, "bench/online", tag, uint64(1_000_000+i)); err != nil {
				res.pushFailures++
				if res.pushErr == "" {
					res.pushErr = err.Error()
				}
				continue
			}
			pushed = append(pushed, tag)
		}
	}()
	res.real, res.wall, res.gcPeakRSS, err = gc()
	close(stop)
	wg.Wait()
	if err != nil {
		return res, err
	}
	fmt.Fprintf(progress, "edgecrd gc: %s; %d blobs, %d manifests, %d layer links deleted, %d skipped young, %d restored, %d failures\n",
		res.wall.Round(time.Millisecond), res.real.BlobsDeleted, res.real.ManifestsDeleted, res.real.LayerLinksDeleted,
		res.real.SkippedYoung, res.real.Restored, res.real.Failures)
	res.pushes = len(pushed)
	if rss, err := peakRSS(e.cmd.Process.Pid); err == nil {
		res.servePeakRSS = rss
	}

	// The first failures are printed: which request, what it got; then
	// how many failed with each answer, and serve's log is kept.
	failed := 0
	answers := map[string]int{}
	report := func(what string, err error) {
		if failed++; failed <= 10 {
			fmt.Fprintf(os.Stderr, "gc-fleet check: %s: %v\n", what, err)
		}
		answers[failureAnswer(err)]++
	}
	defer func() {
		if failed == 0 {
			return
		}
		fmt.Fprintf(os.Stderr, "gc-fleet check: %d failed requests, by answer: %v\n", failed, answers)
		if kept, err := keepLog(e.logPath); err == nil {
			fmt.Fprintf(os.Stderr, "gc-fleet check: edgecrd serve's log kept in %s\n", kept)
		}
	}()
	head := func(repo, ref string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.base+"/v2/"+repo+"/manifests/"+ref, nil)
		if err != nil {
			return false
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		req.SetBasicAuth(c.user, c.password)
		resp, err := c.hc.Do(req)
		if err != nil {
			report("HEAD manifest "+repo+":"+ref, err)
			return false
		}
		drain(resp)
		if resp.StatusCode != http.StatusOK {
			report("HEAD manifest "+repo+":"+ref, fmt.Errorf("got %s (%s)", resp.Status, resp.Header.Get("Docker-Distribution-Api-Version")))
			return false
		}
		return true
	}
	for _, tag := range pushed {
		if head("bench/online", tag) {
			res.pushesVerified++
		}
	}
	// Kept images: the manifest by tag and every blob.
	for i := 1; i < len(imgs); i += 2 {
		res.kept++
		ok := head(imgs[i].repo, imgs[i].tag)
		for _, d := range imgs[i].blobs {
			if !ok {
				break
			}
			resp, err := c.do(ctx, http.MethodHead, c.base+"/v2/"+imgs[i].repo+"/blobs/"+d, nil, 0, http.StatusOK)
			if err != nil {
				report("HEAD blob "+imgs[i].repo+"@"+d, err)
				ok = false
				break
			}
			drain(resp)
		}
		if ok {
			res.keptVerified++
		}
	}
	return res, nil
}

// failureAnswer is the answer a failed check got ("503 Service
// Unavailable"), or "no answer".
func failureAnswer(err error) string {
	msg := err.Error()
	i := strings.Index(msg, "got ")
	if i < 0 {
		return "no answer"
	}
	ans := msg[i+len("got "):]
	if j := strings.IndexAny(ans, ",("); j > 0 {
		ans = ans[:j]
	}
	return strings.TrimSpace(ans)
}

// keepLog copies serve's log out of the benchmark's temp dir (removed at
// the end) into a temp file of its own, for a failed check to be read.
func keepLog(logPath string) (string, error) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "edgecr-bench-gcfleet-serve-*.log")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return "", err
	}
	return f.Name(), f.Close()
}

// pushSmallImage pushes an image of one 1 KiB layer (from seed), a config
// and a manifest under repo:tag.
func pushSmallImage(ctx context.Context, c *client, repo, tag string, seed uint64) error {
	layer := make([]byte, 1024)
	for i := range layer {
		seed = seed*6364136223846793005 + 1442695040888963407
		layer[i] = byte(seed >> 56)
	}
	ld, err := c.pushSmall(ctx, repo, layer)
	if err != nil {
		return fmt.Errorf("pushing a layer of %s:%s: %w", repo, tag, err)
	}
	cfg := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"comment":"%s"}`, tag)
	cd, err := c.pushSmall(ctx, repo, cfg)
	if err != nil {
		return fmt.Errorf("pushing the config of %s:%s: %w", repo, tag, err)
	}
	_, err = c.putManifest(ctx, repo, tag, manifestJSON(cd, int64(len(cfg)), "", 0, []string{ld}, int64(len(layer))))
	return err
}

// seedFleet writes tags images as distribution lays them out under its
// v2 root (…/docker/registry/v2), each file through write (its path under
// v2, slash-separated). 16 images are written at a time (a bucket takes
// one PUT per file).
func seedFleet(tags int, write func(p string, data []byte) error) ([]fleetImage, error) {
	imgs := make([]fleetImage, tags)
	errs := make([]error, tags)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range tags {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			imgs[i], errs[i] = seedImage(i, write)
		}()
	}
	wg.Wait()
	return imgs, errors.Join(errs...)
}

// seedImage writes image i of seedFleet.
func seedImage(i int, write func(p string, data []byte) error) (fleetImage, error) {
	blob := func(data []byte) (string, error) {
		sum := sha256.Sum256(data)
		h := hex.EncodeToString(sum[:])
		return "sha256:" + h, write("blobs/sha256/"+h[:2]+"/"+h+"/data", data)
	}
	link := func(repo, kind, d string) error {
		return write("repositories/"+repo+"/"+kind+"/sha256/"+strings.TrimPrefix(d, "sha256:")+"/link", []byte(d))
	}
	img := fleetImage{repo: fmt.Sprintf("fleet/r%04d", i/10), tag: fmt.Sprintf("t%02d", i%10)}
	var layers []string
	for l := range 3 {
		d, err := blob(fmt.Appendf(nil, "layer %d of image %d\n", l, i))
		if err != nil {
			return img, err
		}
		layers = append(layers, d)
	}
	cfg := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"comment":"image %d"}`, i)
	cd, err := blob(cfg)
	if err != nil {
		return img, err
	}
	img.blobs = append(layers, cd)
	for _, d := range img.blobs {
		if err := link(img.repo, "_layers", d); err != nil {
			return img, err
		}
	}
	m := manifestJSON(cd, int64(len(cfg)), "", 0, layers, int64(len(fmt.Sprintf("layer 0 of image %d\n", i))))
	if img.digest, err = blob(m); err != nil {
		return img, err
	}
	if err := link(img.repo, "_manifests/revisions", img.digest); err != nil {
		return img, err
	}
	tagDir := "repositories/" + img.repo + "/_manifests/tags/" + img.tag
	if err := write(tagDir+"/index/sha256/"+strings.TrimPrefix(img.digest, "sha256:")+"/link", []byte(img.digest)); err != nil {
		return img, err
	}
	return img, write(tagDir+"/current/link", []byte(img.digest))
}
