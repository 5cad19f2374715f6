package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// The GC benchmark (-gc): a fresh edgecrd gets a store of images, half of
// them are deleted (by digest and by tag), and `edgecrd gc
// --delete-untagged` runs next to the serving registry, first as a dry run
// (the mark and the listing) and then for real. Two stores: large layers
// (≥ 2 GiB, set by -size) and many small blobs, where the per-object cost
// shows.

// gcScenario is one store shape.
type gcScenario struct {
	name      string
	images    int
	layers    int   // unique layers per image
	layerSize int64 // bytes
	baseSize  int64 // a layer every image shares; 0: none
}

// gcResult is one scenario's measurements.
type gcResult struct {
	sc                            gcScenario
	storeBytes                    int64 // storage dir before the deletes
	blobs                         int   // blobs stored
	garbageBytes                  int64 // what the deleted images alone referenced
	dryWall, wall                 time.Duration
	dry, real                     gcJSON
	afterBytes                    int64
	keptVerified                  int
	pushMBps                      float64
	pushBlobsPerSec               float64
	deletedByDigest, deletedByTag int
}

// gcJSON is the part of `edgecrd gc -o json` the benchmark reads.
type gcJSON struct {
	DurationSeconds  float64 `json:"durationSeconds"`
	ReclaimedBytes   int64   `json:"reclaimedBytes"`
	BlobsDeleted     int     `json:"blobsDeleted"`
	ManifestsDeleted int     `json:"manifestsDeleted"`
	BlobsMarked      int     `json:"blobsMarked"`
	Manifests        int     `json:"manifests"`
	// For -gc-fleet's progress lines.
	LayerLinksDeleted int `json:"layerLinksDeleted"`
	SkippedYoung      int `json:"skippedYoung"`
	Restored          int `json:"restored"`
	Failures          int `json:"failures"`
}

// runGC is `bench -gc`.
func runGC(ctx context.Context, fs *flag.FlagSet, o options, args []string, stdout, stderr io.Writer) int {
	size := int64(2 << 30)
	if sizeSet(fs) {
		var err error
		if size, err = parseSize(o.size); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
	}
	if fs.NArg() > 0 || o.out != "" {
		fmt.Fprintln(stderr, "bench: -gc takes no arguments and no -o (paste the table where it belongs)")
		return 2
	}
	p, err := parseProto(o.proto)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	const layerSize = 16 << 20
	images := int(max(2, (size+2*layerSize-1)/(2*layerSize)))
	scenarios := []gcScenario{
		{name: "large layers", images: images, layers: 2, layerSize: layerSize, baseSize: layerSize},
		{name: "small blobs", images: 500, layers: 4, layerSize: 4 << 10},
	}
	started, load := time.Now(), benchutil.LoadAverage()
	res, err := benchGC(ctx, o.edgecrd, p, scenarios, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	gcReport(stdout, res, started, load, benchutil.CommandLine("bench", args))
	return 0
}

func sizeSet(fs *flag.FlagSet) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "size" })
	return set
}

func benchGC(ctx context.Context, bin string, p proto, scenarios []gcScenario, progress io.Writer) ([]gcResult, error) {
	tmp, bin, err := benchDir(ctx, "edgecr-bench-gc-", bin, progress)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var out []gcResult
	for i, sc := range scenarios {
		dir := filepath.Join(tmp, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		r, err := benchGCScenario(ctx, bin, dir, p, sc, progress)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sc.name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

type pushedImage struct {
	tag, digest string
	blobs       map[string]int64 // manifest, config and layers
}

func benchGCScenario(ctx context.Context, bin, dir string, p proto, sc gcScenario, progress io.Writer) (res gcResult, err error) {
	res.sc = sc
	e, err := startEdgecrd(ctx, bin, dir)
	if e != nil {
		defer func() { err = errors.Join(err, e.stop()) }()
	}
	if err != nil {
		return res, err
	}
	dataDir := filepath.Join(dir, "edgecrd-data") // as startEdgecrd lays it out
	c := newClient(target{base: e.base, user: e.user, password: e.password, roots: e.roots}, p)
	defer c.close()
	const repo = "bench/gc"

	fmt.Fprintf(progress, "%s: pushing %d images\n", sc.name, sc.images)
	seed := uint64(1000)
	var base string
	start := time.Now()
	var pushed int64
	if sc.baseSize > 0 {
		t, err := c.push(ctx, repo, seed, sc.baseSize)
		if err != nil {
			return res, err
		}
		base, pushed = t.digest, sc.baseSize
	}
	imgs := make([]pushedImage, 0, sc.images)
	for i := range sc.images {
		img := pushedImage{tag: fmt.Sprintf("v%d", i), blobs: map[string]int64{}}
		var layers []string
		for range sc.layers {
			seed++
			t, err := c.push(ctx, repo, seed, sc.layerSize)
			if err != nil {
				return res, err
			}
			layers = append(layers, t.digest)
			img.blobs[t.digest] = sc.layerSize
			pushed += sc.layerSize
		}
		cfg := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"comment":"image %d"}`, i)
		cfgDigest, err := c.pushSmall(ctx, repo, cfg)
		if err != nil {
			return res, err
		}
		img.blobs[cfgDigest] = int64(len(cfg))
		m := manifestJSON(cfgDigest, int64(len(cfg)), base, sc.baseSize, layers, sc.layerSize)
		if img.digest, err = c.putManifest(ctx, repo, img.tag, m); err != nil {
			return res, err
		}
		img.blobs[img.digest] = int64(len(m))
		imgs = append(imgs, img)
	}
	elapsed := time.Since(start).Seconds()
	res.pushMBps = float64(pushed) / elapsed / 1e6
	res.pushBlobsPerSec = float64(sc.images*(sc.layers+1)) / elapsed
	res.storeBytes = dirBytes(filepath.Join(dataDir, "registry"))
	res.blobs = 1 + len(imgs)*(sc.layers+2)
	if sc.baseSize == 0 {
		res.blobs--
	}

	// Delete every other image: by digest and by tag, alternately.
	for i := 0; i < len(imgs); i += 2 {
		ref := imgs[i].tag
		if i%4 == 0 {
			ref = imgs[i].digest
			res.deletedByDigest++
		} else {
			res.deletedByTag++
		}
		resp, err := c.do(ctx, http.MethodDelete, c.base+"/v2/"+repo+"/manifests/"+ref, nil, 0, http.StatusAccepted)
		if err != nil {
			return res, err
		}
		drain(resp)
		for _, n := range imgs[i].blobs {
			res.garbageBytes += n
		}
	}

	gc := func(args ...string) (gcJSON, time.Duration, error) {
		r, wall, _, err := gcOnce(ctx, bin, dataDir, "0s", args...)
		return r, wall, err
	}
	fmt.Fprintf(progress, "%s: edgecrd gc --dry-run\n", sc.name)
	if res.dry, res.dryWall, err = gc("--dry-run"); err != nil {
		return res, err
	}
	fmt.Fprintf(progress, "%s: edgecrd gc\n", sc.name)
	if res.real, res.wall, err = gc(); err != nil {
		return res, err
	}
	res.afterBytes = dirBytes(filepath.Join(dataDir, "registry"))

	// Every kept image is still complete: its tag, its manifest and each
	// blob answer.
	for i := 1; i < len(imgs); i += 2 {
		for d := range imgs[i].blobs {
			path := "/blobs/" + d
			if d == imgs[i].digest {
				path = "/manifests/" + imgs[i].tag
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.base+"/v2/"+repo+path, nil)
			if err != nil {
				return res, err
			}
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
			req.SetBasicAuth(c.user, c.password)
			resp, err := c.hc.Do(req)
			if err != nil {
				return res, err
			}
			drain(resp)
			if resp.StatusCode != http.StatusOK || d == imgs[i].digest && resp.Header.Get("Docker-Content-Digest") != d {
				return res, fmt.Errorf("kept image %s after gc: HEAD %s: %s", imgs[i].tag, path, resp.Status)
			}
		}
		res.keptVerified++
	}
	return res, nil
}

func manifestJSON(cfg string, cfgSize int64, base string, baseSize int64, layers []string, layerSize int64) []byte {
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, "application/vnd.oci.image.manifest.v1+json", desc{"application/vnd.oci.image.config.v1+json", cfg, cfgSize}, nil}
	if base != "" {
		m.Layers = append(m.Layers, desc{"application/vnd.oci.image.layer.v1.tar", base, baseSize})
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, desc{"application/vnd.oci.image.layer.v1.tar", l, layerSize})
	}
	b, _ := json.Marshal(m)
	return b
}

// pushSmall uploads a small blob monolithically: POST, then PUT with the body.
func (c *client) pushSmall(ctx context.Context, repo string, data []byte) (string, error) {
	resp, err := c.do(ctx, http.MethodPost, c.base+"/v2/"+repo+"/blobs/uploads/", nil, 0, http.StatusAccepted)
	if err != nil {
		return "", err
	}
	drain(resp)
	loc, err := resp.Location()
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(data)
	d := "sha256:" + hex.EncodeToString(s[:])
	q := loc.Query()
	q.Set("digest", d)
	loc.RawQuery = q.Encode()
	resp, err = c.do(ctx, http.MethodPut, loc.String(), bytes.NewReader(data), int64(len(data)), http.StatusCreated)
	if err != nil {
		return "", err
	}
	drain(resp)
	return d, nil
}

func (c *client) putManifest(ctx context.Context, repo, tag string, m []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(m))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	req.SetBasicAuth(c.user, c.password)
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return "", fmt.Errorf("PUT manifest %s: %s: %s", tag, resp.Status, b)
	}
	return resp.Header.Get("Docker-Content-Digest"), nil
}

// approxBytes prints n with one decimal in the largest IEC unit it reaches.
func approxBytes(n int64) string {
	for _, u := range []struct {
		name  string
		shift uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n >= 1<<u.shift {
			return fmt.Sprintf("%.1f %s", float64(n)/float64(int64(1)<<u.shift), u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}

func dirBytes(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func gcReport(w io.Writer, rs []gcResult, started time.Time, load, command string) {
	fmt.Fprintf(w, "- Date: %s\n", started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- Machine: %s\n", benchutil.Machine())
	if load != "" {
		fmt.Fprintf(w, "- Load average (1 min) before the run: %s\n", load)
	}
	fmt.Fprintf(w, "- Command: `%s`\n\n", command)
	fmt.Fprintln(w, "| Store | Images kept / deleted (by digest, by tag) | Blobs | Store size | Garbage | `gc --dry-run` wall time | `gc` wall time (collector) | Reclaimed | Deleted blobs / manifests | Storage after | Kept images intact |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		layers := fmt.Sprintf("%d × %s", r.sc.layers, approxBytes(r.sc.layerSize))
		if r.sc.baseSize > 0 {
			layers += " + shared " + approxBytes(r.sc.baseSize)
		}
		fmt.Fprintf(w, "| %s: %d images of %s | %d / %d (%d, %d) | %d | %s | %s | %s | %s (%s) | %s | %d / %d | %s | %d of %d |\n",
			r.sc.name, r.sc.images, layers,
			r.sc.images-r.deletedByDigest-r.deletedByTag, r.deletedByDigest+r.deletedByTag, r.deletedByDigest, r.deletedByTag,
			r.blobs, approxBytes(r.storeBytes), approxBytes(r.garbageBytes),
			r.dryWall.Round(time.Millisecond), r.wall.Round(time.Millisecond),
			(time.Duration(r.real.DurationSeconds * float64(time.Second))).Round(time.Millisecond),
			approxBytes(r.real.ReclaimedBytes), r.real.BlobsDeleted, r.real.ManifestsDeleted,
			approxBytes(r.afterBytes), r.keptVerified, r.sc.images-r.deletedByDigest-r.deletedByTag)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Wall time is `edgecrd gc` as a process (start, load the data dir, collect, print) while `serve` runs;")
	fmt.Fprintln(w, "the collector's own time is in parentheses. The store is pushed through the registry (POST, PATCH,")
	fmt.Fprintln(w, "PUT per blob, then the manifest); garbage is what only the deleted images referenced.")
	for _, r := range rs {
		fmt.Fprintf(w, "Building the %s store (pushes through the registry): %.1f MB/s, %.0f blobs/s.\n", r.sc.name, r.pushMBps, r.pushBlobsPerSec)
	}
}

// gcOnce runs `edgecrd gc --delete-untagged -o json` on dataDir with grace
// and args, and returns its report, wall time and peak RSS.
func gcOnce(ctx context.Context, bin, dataDir, grace string, args ...string) (gcJSON, time.Duration, int64, error) {
	return gcOn(ctx, bin, []string{"--data-dir", dataDir}, nil, grace, args...)
}

// gcOn is gcOnce on the state where names (--data-dir DIR or --storage
// URL), with environment env (nil: this process's).
func gcOn(ctx context.Context, bin string, where, env []string, grace string, args ...string) (gcJSON, time.Duration, int64, error) {
	args = append(append([]string{"gc"}, where...), append([]string{"--delete-untagged", "--grace", grace, "-o", "json"}, args...)...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	wall := time.Since(t0)
	var r gcJSON
	if err != nil {
		return r, wall, 0, fmt.Errorf("edgecrd %s: %w: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, wall, 0, fmt.Errorf("parsing edgecrd gc output: %w", err)
	}
	return r, wall, maxRSS(cmd.ProcessState), nil
}
