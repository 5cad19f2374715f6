package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecr/edgecr/internal/ocitest"
	"github.com/edgecr/edgecr/server/mirror"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// upstreamFixture is a second edgecrd with its own CA and the admin's
// credentials, holding images to sync.
type upstreamFixture struct {
	ts     *testServer
	caFile string
	cred   string
}

func newUpstream(t *testing.T) *upstreamFixture {
	t.Helper()
	up := startServer(t, nil)
	dir := t.TempDir()
	f := &upstreamFixture{ts: up, caFile: filepath.Join(dir, "ca.pem"), cred: filepath.Join(dir, "cred")}
	if err := os.WriteFile(f.caFile, up.state.CA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cred, []byte("admin:"+up.adminPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *upstreamFixture) yaml() string {
	return fmt.Sprintf("upstreams:\n  - name: up\n    url: https://%s\n    credentials: {file: %s}\n    ca: %s\n", f.ts.addr, f.cred, f.caFile)
}

// pushIndex pushes a two-platform index (linux/amd64, linux/arm64) as
// repo:tag and returns it.
func (f *upstreamFixture) pushIndex(t *testing.T, repo, tag string) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	if err := remote.WriteIndex(f.ts.ref(repo+":"+tag), idx, f.ts.admin()...); err != nil {
		t.Fatalf("pushing %s:%s upstream: %v", repo, tag, err)
	}
	return idx
}

func (f *upstreamFixture) pushImage(t *testing.T, repo, tag string, size int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(f.ts.ref(repo+":"+tag), img, f.ts.admin()...); err != nil {
		t.Fatalf("pushing %s:%s upstream: %v", repo, tag, err)
	}
	return img
}

// sign attaches a referrer (a signature-like artifact) to subject.
func (f *upstreamFixture) sign(t *testing.T, repo string, subject interface {
	Digest() (v1.Hash, error)
	Size() (int64, error)
	MediaType() (types.MediaType, error)
}) v1.Hash {
	t.Helper()
	d, err := ocitest.Descriptor(subject)
	if err != nil {
		t.Fatal(err)
	}
	art, err := ocitest.Artifact(d, "application/vnd.example.signature", "application/vnd.example.payload", []byte("sig of "+d.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := art.Digest()
	r, _ := name.NewDigest(f.ts.addr + "/" + repo + "@" + h.String())
	if err := remote.Write(r, art, f.ts.admin()...); err != nil {
		t.Fatalf("pushing a referrer upstream: %v", err)
	}
	return h
}

func parseConfig(t *testing.T, y string) *mirror.Config {
	t.Helper()
	c, err := mirror.Parse([]byte(y))
	if err != nil {
		t.Fatalf("parsing sync configuration: %v\n%s", err, y)
	}
	return c
}

func hashOf(t *testing.T, m interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := m.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Acceptance 1 (on loopback): a semver rule over two repositories and a
// platform filter: exactly the matching tags arrive, digests unchanged,
// only the chosen platform's image, referrers with them; a second run
// copies nothing.
func TestSyncSemverPlatformsReferrers(t *testing.T) {
	up := newUpstream(t)
	want := map[string]v1.Hash{}
	var sigs []v1.Hash
	for _, repo := range []string{"team/web", "team/api"} {
		for _, tag := range []string{"1.3.9", "1.4.0", "1.5.2", "2.0.0", "latest"} {
			idx := up.pushIndex(t, repo, tag)
			if tag == "1.4.0" || tag == "1.5.2" {
				want["mirror/"+repo+":"+tag] = hashOf(t, idx)
			}
			if tag == "1.5.2" {
				sigs = append(sigs, up.sign(t, repo, idx))
			}
		}
	}
	up.pushIndex(t, "other/x", "1.5.0") // not under the rule's glob
	cfg := parseConfig(t, up.yaml()+`rules:
  - name: team
    upstream: up
    repositories: ["team/*"]
    tags: {semver: ">=1.4 <2"}
    platforms: [linux/arm64]
    destination: mirror
    referrers: true
    schedule: off
`)
	dev := startServer(t, func(o *Options) { o.Sync = cfg })
	rep, err := dev.srv.Sync(context.Background(), mirror.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() {
		t.Fatalf("sync failed: %+v %+v", rep.Errors, rep.Items)
	}
	got := map[string]bool{}
	for _, it := range rep.Items {
		got[it.Destination] = true
		if it.Outcome != mirror.OutcomeCopied {
			t.Errorf("%s: %s, want copied", it.Destination, it.Outcome)
		}
	}
	if len(got) != len(want) {
		t.Errorf("copied %v, want %d items", got, len(want))
	}
	opts := dev.admin()
	for ref, d := range want {
		h, err := remote.Head(dev.ref(ref), opts...)
		if err != nil {
			t.Fatalf("%s on the device: %v", ref, err)
		}
		if h.Digest != d {
			t.Errorf("%s: digest %s on the device, %s upstream", ref, h.Digest, d)
		}
		idx, err := remote.Index(dev.ref(ref), opts...)
		if err != nil {
			t.Fatal(err)
		}
		im, _ := idx.IndexManifest()
		for _, m := range im.Manifests {
			_, err := remote.Head(dev.ref(strings.Split(ref, ":")[0]+"@"+m.Digest.String()), opts...)
			if arm := m.Platform.Architecture == "arm64"; arm != (err == nil) {
				t.Errorf("%s %s: present=%v, want present only for arm64", ref, m.Platform, err == nil)
			}
		}
	}
	// Tags outside the range, the other repository: absent.
	for _, ref := range []string{"mirror/team/web:1.3.9", "mirror/team/web:2.0.0", "mirror/team/web:latest", "mirror/other/x:1.5.0"} {
		if _, err := remote.Head(dev.ref(ref), opts...); err == nil {
			t.Errorf("%s was copied, it does not match the rule", ref)
		}
	}
	// Referrers came along, listed by the device's referrers API.
	for i, repo := range []string{"team/api", "team/web"} {
		_ = i
		subj := want["mirror/"+repo+":1.5.2"]
		ds, err := ocitest.ReferrerDigests(dev.ref("mirror/"+repo+":x").Context(), subj, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 1 || !slices.ContainsFunc(sigs, func(h v1.Hash) bool { return h.String() == ds[0] }) {
			t.Errorf("referrers of mirror/%s@%s on the device: %v, want one of %v", repo, subj, ds, sigs)
		}
	}
	// Second run: everything skipped, nothing sent.
	before := dev.srv.SyncUpstreamRequests("up")
	rep2, err := dev.srv.Sync(context.Background(), mirror.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := rep2.Count(mirror.OutcomeCopied); n != 0 || rep2.Count(mirror.OutcomeSkipped) != len(want) || rep2.BytesCopied() != 0 {
		t.Errorf("second run: %d copied, %d skipped, %d bytes; want 0, %d, 0", n, rep2.Count(mirror.OutcomeSkipped), rep2.BytesCopied(), len(want))
	}
	t.Logf("first run: %d upstream requests; second run: %d", before, dev.srv.SyncUpstreamRequests("up")-before)
	st := dev.srv.SyncStatus()
	if len(st) != 1 || st[0].Skipped != len(want) || st[0].LastRun.IsZero() {
		t.Errorf("status after the second run: %+v", st)
	}
}

// Pull-through on loopback: a pull under the prefix of an image the
// device lacks fetches it; concurrent pullers share one upstream fetch per
// blob; a missing image names the upstream.
func TestPullThroughConcurrent(t *testing.T) {
	up := newUpstream(t)
	img := up.pushImage(t, "library/app", "v1", 1<<20)
	idx := up.pushIndex(t, "library/multi", "v1")
	var blobGets sync.Map // digest → *atomic.Int64
	cfg := parseConfig(t, up.yaml()+"pullThrough:\n  - prefix: cache\n    upstream: up\n")
	dev := startServer(t, func(o *Options) { o.Sync = cfg })
	dev.srv.sync.m.Wrap = func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
				n, _ := blobGets.LoadOrStore(r.URL.Path[i+len("/blobs/"):], &atomic.Int64{})
				n.(*atomic.Int64).Add(1)
			}
			return next.RoundTrip(r)
		})
	}
	pull := dev.remoteOpts("admin", dev.adminPW)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			got, err := remote.Image(dev.ref("cache/library/app:v1"), pull...)
			if err == nil {
				var ls []v1.Layer
				ls, err = got.Layers()
				for _, l := range ls {
					if err == nil {
						var rc interface{ Close() error }
						rc, err = l.Compressed()
						if err == nil {
							rc.Close()
						}
					}
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("pull through the device: %v", err)
		}
	}
	h, err := remote.Head(dev.ref("cache/library/app:v1"), pull...)
	if err != nil || h.Digest != hashOf(t, img) {
		t.Fatalf("stored image: %v %v, want digest %s", h, err, hashOf(t, img))
	}
	blobGets.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Load(); n != 1 {
			t.Errorf("blob %s fetched %d times from the upstream, want 1", k, n)
		}
		return true
	})
	// An index: the index, then the platform a client asks for.
	amd, err := remote.Image(dev.ref("cache/library/multi:v1"), append(pull, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))...)
	if err != nil {
		t.Fatalf("pulling one platform of an index through the device: %v", err)
	}
	if _, err := amd.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	if h, err := remote.Head(dev.ref("cache/library/multi:v1"), pull...); err != nil || h.Digest != hashOf(t, idx) {
		t.Errorf("index through the device: %v %v, want %s", h, err, hashOf(t, idx))
	}
	// Missing upstream: the error names the upstream.
	_, err = remote.Image(dev.ref("cache/library/nope:v1"), pull...)
	if err == nil || !strings.Contains(err.Error(), "upstream up ("+up.ts.addr+")") {
		t.Errorf("pull of an image the upstream lacks: %v, want an error naming upstream up (%s)", err, up.ts.addr)
	}

	// Upstream gone: what is stored still pulls, the rest fails naming it.
	// (The pull-throughs store in the background: wait for them to end.)
	waitFor(t, "the pull-throughs ended", func() bool { return dev.srv.sync.m.PullsUnderWay() == 0 })
	dev.srv.sync.m.Attempts = 1
	up.ts.cancel()
	<-up.ts.done
	up.ts.done <- nil // for its cleanup
	if _, err := remote.Image(dev.ref("cache/library/app:v1"), pull...); err != nil {
		t.Errorf("stored image with the upstream down: %v", err)
	}
	_, err = remote.Image(dev.ref("cache/library/other:v1"), pull...)
	if err == nil || !strings.Contains(err.Error(), "upstream up ("+up.ts.addr+")") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("missing image with the upstream down: %v, want an error naming upstream up (%s)", err, up.ts.addr)
	} else {
		t.Logf("missing image with the upstream down: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Acceptance 5 (on loopback): wrong credentials and an untrusted
// certificate fail with a clear error, store nothing, and the device
// keeps serving.
func TestSyncBadUpstream(t *testing.T) {
	up := newUpstream(t)
	up.pushImage(t, "team/app", "1.0.0", 1024)
	other := newUpstream(t) // its CA is not up's
	wrongCred := filepath.Join(t.TempDir(), "cred")
	os.WriteFile(wrongCred, []byte("admin:not-the-password\n"), 0o600)
	for _, tc := range []struct{ name, cred, ca, want string }{
		{"wrong credentials", wrongCred, up.caFile, "UNAUTHORIZED"},
		{"untrusted certificate", up.cred, other.caFile, "its certificate is not trusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseConfig(t, fmt.Sprintf("upstreams:\n  - name: up\n    url: https://%s\n    credentials: {file: %s}\n    ca: %s\n", up.ts.addr, tc.cred, tc.ca)+
				"rules:\n  - {name: r, upstream: up, repositories: [team/app]}\n")
			dev := startServer(t, func(o *Options) { o.Sync = cfg })
			dev.srv.sync.m.Attempts = 1
			rep, err := dev.srv.Sync(context.Background(), mirror.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Failed() || len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0].Reason, tc.want) || !strings.Contains(rep.Errors[0].Reason, "upstream up") {
				t.Fatalf("report: %+v, want one rule error naming upstream up and containing %q", rep.Errors, tc.want)
			}
			t.Logf("error: %s", rep.Errors[0].Reason)
			if _, err := remote.Head(dev.ref("team/app:1.0.0"), dev.admin()...); err == nil {
				t.Error("something was stored")
			}
			if resp := dev.do("GET", "/v2/", "admin", dev.adminPW, nil, nil); resp.StatusCode != 200 {
				t.Errorf("device after the failed sync: /v2/ answered %d", resp.StatusCode)
			}
		})
	}
}

// Acceptance 3 (on loopback, the cut made by the transport rather than a
// veth): the uplink fails in the middle of a blob; the run reports it, no
// tag is visible, the next run copies only what is missing and completes.
func TestSyncCutResumes(t *testing.T) {
	up := newUpstream(t)
	img := up.pushImage(t, "team/big", "1.0.0", 4<<20)
	cfg := parseConfig(t, up.yaml()+"rules:\n  - {name: r, upstream: up, repositories: [team/big]}\n")
	dev := startServer(t, func(o *Options) { o.Sync = cfg })
	dev.srv.sync.m.Attempts = 1
	var cut atomic.Bool
	cut.Store(true)
	dev.srv.sync.m.Wrap = func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(r)
			if err == nil && cut.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && resp.ContentLength > 1<<20 {
				resp.Body = &cutBody{rc: resp.Body, left: 1 << 20}
			}
			return resp, err
		})
	}
	rep, err := dev.srv.Sync(context.Background(), mirror.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(mirror.OutcomeFailed) != 1 {
		t.Fatalf("first run: %+v, want the image failed", rep.Items)
	}
	t.Logf("cut run: %s", rep.Items[0].Reason)
	if _, err := remote.Head(dev.ref("team/big:1.0.0"), dev.admin()...); err == nil {
		t.Fatal("the tag is visible after a cut run")
	}
	cut.Store(false)
	rep, err = dev.srv.Sync(context.Background(), mirror.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(mirror.OutcomeCopied) != 1 {
		t.Fatalf("second run: %+v", rep.Items)
	}
	it := rep.Items[0]
	t.Logf("resumed: %d blob(s) sent, %d already present", it.Blobs, it.BlobsPresent)
	if it.BlobsPresent == 0 {
		t.Error("the resumed run sent every blob again; the config, which arrived before the cut, should have been kept")
	}
	if h, err := remote.Head(dev.ref("team/big:1.0.0"), dev.admin()...); err != nil || h.Digest != hashOf(t, img) {
		t.Fatalf("after the resumed run: %v %v", h, err)
	}
}

type cutBody struct {
	rc interface {
		Read([]byte) (int, error)
		Close() error
	}
	left int
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("connection reset (test cut)")
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= n
	return n, err
}
func (b *cutBody) Close() error { return b.rc.Close() }

// The Sync page lists each rule with its last run, next run, counts and
// the reason of each failure; credentials never appear.
func TestUISyncPage(t *testing.T) {
	up := newUpstream(t)
	up.pushImage(t, "team/app", "1.0.0", 1024)
	cfg := parseConfig(t, up.yaml()+"rules:\n  - {name: good, upstream: up, repositories: [team/app], schedule: every@1h}\n  - {name: bad, upstream: up, repositories: [team/nope]}\npullThrough:\n  - {prefix: cache, upstream: up}\n")
	dev := startUI(t, func(o *Options) { o.Sync = cfg })
	dev.srv.sync.m.Attempts = 1
	if _, err := dev.srv.Sync(context.Background(), mirror.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, dev)
	b.mustLogin()
	resp, body := b.get("/sync")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /sync: %d", resp.StatusCode)
	}
	for _, want := range []string{`data-rule="good"`, `data-rule="bad"`, "every@1h", "1 (", "team/nope", "NAME_UNKNOWN", "cache/", `aria-current="page">Sync`} {
		if !strings.Contains(body, want) {
			t.Errorf("the Sync page lacks %q", want)
		}
	}
	pw := up.ts.adminPW
	if strings.Contains(body, pw) || strings.Contains(dev.logs.String(), pw) {
		t.Error("the upstream's password appears on the Sync page or in the log")
	}
}

// Overlapping rules (zot#3600: two rules on one repository that differed
// only in their tag filter synced every tag): each rule copies its own
// tags only; a dry run copies nothing; a filtered index and the chosen
// platform's image survive a collection that removes untagged manifests.
func TestSyncRulePrecedenceDryRunAndGC(t *testing.T) {
	up := newUpstream(t)
	for _, tag := range []string{"1.0.0", "2.0.0", "nightly-1", "latest"} {
		up.pushIndex(t, "team/app", tag)
	}
	cfg := parseConfig(t, up.yaml()+`rules:
  - {name: stable, upstream: up, repositories: [team/app], tags: {semver: ">=2"}, platforms: [linux/arm64], schedule: every@1h}
  - {name: nightly, upstream: up, repositories: [team/app], tags: {regex: "^nightly-"}, platforms: [linux/arm64], schedule: every@5m}
`)
	dev := startServer(t, func(o *Options) { o.Sync = cfg })
	rep, err := dev.srv.Sync(context.Background(), mirror.RunOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(mirror.OutcomeWouldCopy) != 2 || rep.BytesCopied() != 0 {
		t.Fatalf("dry run: %+v", rep.Items)
	}
	tags, _ := remote.List(dev.ref("team/app:x").Context(), dev.admin()...)
	if len(tags) != 0 {
		t.Fatalf("the dry run wrote tags %v", tags)
	}
	if _, err := dev.srv.Sync(context.Background(), mirror.RunOptions{Rules: []string{"stable", "nightly"}}); err != nil {
		t.Fatal(err)
	}
	tags, err = remote.List(dev.ref("team/app:x").Context(), dev.admin()...)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tags)
	if !slices.Equal(tags, []string{"2.0.0", "nightly-1"}) {
		t.Fatalf("tags on the device: %v, want [2.0.0 nightly-1]: each rule its own", tags)
	}
	dev.age(t, 2*time.Hour)
	dev.gc(t, GCOptions{Grace: time.Hour, DeleteUntagged: true})
	img, err := remote.Image(dev.ref("team/app:2.0.0"), append(dev.admin(), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))...)
	if err == nil {
		_, err = img.RawConfigFile()
	}
	if err != nil {
		t.Fatalf("the arm64 image of a filtered index after a collection: %v", err)
	}
	if _, err := dev.srv.Sync(context.Background(), mirror.RunOptions{Rules: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), `no rule named "nope"`) {
		t.Errorf("unknown rule: %v", err)
	}
}

// serve's runner runs a rule when its schedule comes (the clock jumps
// past the first run) and records the run for the page, info and metrics.
func TestSyncScheduleRuns(t *testing.T) {
	up := newUpstream(t)
	up.pushImage(t, "team/app", "1.0.0", 1024)
	cfg := parseConfig(t, up.yaml()+"rules:\n  - {name: r, upstream: up, repositories: [team/app], schedule: every@10m}\n  - {name: manual, upstream: up, repositories: [team/app], destination: m}\n")
	dev := startServer(t, func(o *Options) { o.Sync = cfg })
	t0 := time.Now()
	var calls atomic.Int64
	now := func() time.Time {
		if calls.Add(1) == 1 {
			return t0
		}
		return t0.Add(11 * time.Minute)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { dev.srv.sync.loop(ctx, now); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := dev.srv.SyncStatus()
		if !st[0].LastRun.IsZero() {
			if st[0].Copied != 1 || !st[1].LastRun.IsZero() {
				t.Errorf("after the scheduled run: %+v", st)
			}
			if want := t0.Add(21 * time.Minute); !st[0].NextRun.Equal(want) || !st[1].NextRun.IsZero() {
				t.Errorf("next runs: %v, %v; want %v and none (off)", st[0].NextRun, st[1].NextRun, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the scheduled rule did not run")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if _, err := remote.Head(dev.ref("team/app:1.0.0"), dev.admin()...); err != nil {
		t.Errorf("scheduled run's image: %v", err)
	}
	last, err := dev.state.LastSync()
	if err != nil || len(last) != 2 || last[0].Copied != 1 {
		t.Errorf("sync-status.json for edgecrd info: %+v %v", last, err)
	}
	resp := dev.do("GET", "/metrics", "", "", nil, nil)
	var b strings.Builder
	io.Copy(&b, resp.Body)
	resp.Body.Close()
	for _, want := range []string{`edgecr_sync_images_total{outcome="copied",rule="r"} 1`, `edgecr_sync_runs_total{result="ok",rule="r"} 1`, `edgecr_sync_upstream_requests_total{upstream="up"}`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// --sync-rate paces what comes from an upstream: a lower bound only (a
// slow machine makes it slower, never faster).
func TestSyncRate(t *testing.T) {
	up := newUpstream(t)
	up.pushImage(t, "team/app", "1.0.0", 768<<10)
	cfg := parseConfig(t, up.yaml()+"rules:\n  - {name: r, upstream: up, repositories: [team/app]}\n")
	dev := startServer(t, func(o *Options) { o.Sync, o.SyncRate = cfg, 256<<10 })
	start := time.Now()
	rep, err := dev.srv.Sync(context.Background(), mirror.RunOptions{})
	if err != nil || rep.Count(mirror.OutcomeCopied) != 1 {
		t.Fatalf("sync: %v %+v", err, rep)
	}
	// 768 KiB at 256 KiB/s with a 256 KiB burst: at least 2 s.
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("768 KiB at 256 KiB/s took %v", d)
	}
}
