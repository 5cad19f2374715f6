package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// gateBody passes the first left bytes of an upstream blob, then waits
// for gate and passes the rest, or, when cut is set by then, fails as a
// reset connection does.
type gateBody struct {
	rc   io.ReadCloser
	left int
	gate <-chan struct{}
	cut  *atomic.Bool
	held *sync.WaitGroup // Done once the first part was sent
	open bool
}

func (b *gateBody) Read(p []byte) (int, error) {
	if !b.open && b.left <= 0 {
		b.held.Done()
		<-b.gate
		b.open = true
		if b.cut.Load() {
			return 0, fmt.Errorf("connection reset (test cut)")
		}
	}
	if !b.open && len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	if !b.open {
		b.left -= n
	}
	return n, err
}

func (b *gateBody) Close() error { return b.rc.Close() }

// streamFixture is a device with a pull-through prefix cache/ whose
// upstream sends the first half of every large blob and then waits for
// the test.
type streamFixture struct {
	up       *upstreamFixture
	dev      *testServer
	blobGets sync.Map // digest → *atomic.Int64
	gate     chan struct{}
	cut      atomic.Bool
	held     sync.WaitGroup
	gated    atomic.Bool
}

func newStreamFixture(t *testing.T) *streamFixture {
	f := &streamFixture{up: newUpstream(t), gate: make(chan struct{})}
	cfg := parseConfig(t, f.up.yaml()+"pullThrough:\n  - prefix: cache\n    upstream: up\n")
	f.dev = startServer(t, func(o *Options) { o.Sync = cfg })
	f.dev.srv.sync.m.Wrap = func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			i := strings.Index(r.URL.Path, "/blobs/sha256:")
			if i >= 0 && r.Method == http.MethodGet {
				n, _ := f.blobGets.LoadOrStore(r.URL.Path[i+len("/blobs/"):], &atomic.Int64{})
				n.(*atomic.Int64).Add(1)
			}
			resp, err := next.RoundTrip(r)
			if err == nil && i >= 0 && r.Method == http.MethodGet && resp.ContentLength > 1<<20 && f.gated.Load() {
				f.held.Add(1)
				resp.Body = &gateBody{rc: resp.Body, left: int(resp.ContentLength / 2), gate: f.gate, cut: &f.cut, held: &f.held}
			}
			return resp, err
		})
	}
	return f
}

func (f *streamFixture) gets(d v1.Hash) int64 {
	if n, ok := f.blobGets.Load(d.String()); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// pullManifest pulls repo:tag through the device and returns its layer.
func (f *streamFixture) pullManifest(t *testing.T, repo string) v1.Descriptor {
	t.Helper()
	desc, err := remote.Get(f.dev.ref(repo+":v1"), f.dev.admin()...)
	if err != nil {
		t.Fatalf("pulling the manifest of %s:v1 through the device: %v", repo, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	return m.Layers[0]
}

// openLayer starts a client's GET of the blob l of repo on the device.
func (f *streamFixture) openLayer(t *testing.T, repo string, l v1.Descriptor) io.ReadCloser {
	t.Helper()
	layer, err := remote.Layer(f.dev.ref(repo+"@"+l.Digest.String()).(name.Digest), f.dev.admin()...)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		t.Fatalf("GET of blob %s through the device: %v", l.Digest, err)
	}
	return rc
}

func (f *streamFixture) stored(t *testing.T, repo string, manifest bool, d v1.Hash) bool {
	t.Helper()
	has, err := f.dev.srv.sync.has(context.Background(), repo, manifest, d)
	if err != nil {
		t.Fatal(err)
	}
	return has
}

func (f *streamFixture) spoolFiles(t *testing.T) []os.DirEntry {
	t.Helper()
	ents, err := os.ReadDir(f.dev.state.Dir + "/" + spoolDir)
	if err != nil {
		t.Fatal(err)
	}
	return ents
}

// within runs f and fails the test when it has not returned after d (a
// read that waits for the blob to be stored would).
func within(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s: not done after %s", what, d)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("%s: not after 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func upstreamLayer(t *testing.T, img v1.Image) []byte {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ls[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A first pull through the device gets the manifest and the blob's bytes
// while the device is still fetching them (the upstream has sent half of
// the blob and waits), before anything is stored; two clients reading
// the blob meanwhile share one upstream fetch; the image is stored once
// the blob is whole and verified.
func TestPullThroughStreamsWhileStoring(t *testing.T) {
	f := newStreamFixture(t)
	img := f.up.pushImage(t, "library/big", "v1", 4<<20)
	want := upstreamLayer(t, img)
	md := hashOf(t, img)
	f.gated.Store(true)

	l := f.pullManifest(t, "cache/library/big")
	if f.stored(t, "cache/library/big", true, md) {
		t.Fatal("the manifest is stored before its blobs")
	}
	half := int(l.Size / 2)
	var rcs []io.ReadCloser
	got := make([][]byte, 2)
	for i := range got {
		rcs = append(rcs, f.openLayer(t, "cache/library/big", l))
		got[i] = make([]byte, half)
		within(t, 20*time.Second, fmt.Sprintf("client %d reading the first half of the blob while the upstream holds the rest", i), func() error {
			_, err := io.ReadFull(rcs[i], got[i])
			return err
		})
		defer rcs[i].Close()
	}
	f.held.Wait()
	if f.stored(t, "cache/library/big", false, l.Digest) || f.stored(t, "cache/library/big", true, md) {
		t.Fatal("the blob or the manifest is stored before the upstream sent the whole blob")
	}
	if len(f.spoolFiles(t)) == 0 {
		t.Error("spool: no file, want the blob being fetched in one") // (the config's may still be there too)
	}
	for i, b := range got {
		if !bytes.Equal(b, want[:half]) {
			t.Fatalf("client %d: the first half differs from the upstream's blob", i)
		}
	}
	t.Logf("both clients had %d of %d bytes while the upstream held the rest; nothing stored yet", half, l.Size)

	close(f.gate)
	for i, rc := range rcs {
		rest, err := io.ReadAll(rc) // the layer's reader checks the digest at the end
		if err != nil {
			t.Fatalf("client %d reading the rest of the blob: %v", i, err)
		}
		if !bytes.Equal(append(got[i], rest...), want) {
			t.Fatalf("client %d: the blob differs from the upstream's", i)
		}
	}
	if n := f.gets(l.Digest); n != 1 {
		t.Errorf("the blob was fetched %d times from the upstream, want 1", n)
	}
	waitFor(t, "the image stored", func() bool { return f.stored(t, "cache/library/big", true, md) })
	if h, err := remote.Head(f.dev.ref("cache/library/big:v1"), f.dev.admin()...); err != nil || h.Digest != md {
		t.Fatalf("stored tag: %v %v, want %s", h, err, md)
	}
	waitFor(t, "the spool emptied", func() bool { return len(f.spoolFiles(t)) == 0 })
}

// An upstream cut in the middle of a blob fails the client's read (never
// a short blob that looks whole), stores nothing, and the next pull
// fetches again.
func TestPullThroughCutMidBlob(t *testing.T) {
	f := newStreamFixture(t)
	img := f.up.pushImage(t, "library/big", "v1", 4<<20)
	want := upstreamLayer(t, img)
	md := hashOf(t, img)
	f.gated.Store(true)
	f.cut.Store(true)

	l := f.pullManifest(t, "cache/library/big")
	rc := f.openLayer(t, "cache/library/big", l)
	defer rc.Close()
	first := make([]byte, l.Size/2)
	within(t, 20*time.Second, "reading the first half of the blob", func() error {
		_, err := io.ReadFull(rc, first)
		return err
	})
	f.held.Wait()
	close(f.gate) // the upstream fails
	var rest []byte
	var err error
	within(t, 20*time.Second, "reading past the cut", func() error {
		rest, err = io.ReadAll(rc)
		return nil
	})
	if err == nil {
		t.Fatalf("the client read %d of %d bytes and no error: a cut must fail the read", len(first)+len(rest), l.Size)
	}
	t.Logf("client's read after the cut: %v (after %d of %d bytes)", err, len(first)+len(rest), l.Size)
	waitFor(t, "the spool emptied", func() bool { return len(f.spoolFiles(t)) == 0 })
	if f.stored(t, "cache/library/big", false, l.Digest) || f.stored(t, "cache/library/big", true, md) {
		t.Fatal("something of the cut image is stored")
	}
	if _, err := remote.Head(f.dev.ref("cache/library/big:v1"), f.dev.admin()...); err != nil {
		t.Logf("tag after the cut: %v", err)
	}

	// The next pull fetches again, whole.
	f.gated.Store(false)
	f.cut.Store(false)
	waitFor(t, "the cut pull-through ended", func() bool { return f.dev.srv.sync.m.PullsUnderWay() == 0 })
	l = f.pullManifest(t, "cache/library/big")
	rc2 := f.openLayer(t, "cache/library/big", l)
	defer rc2.Close()
	var b []byte
	within(t, 20*time.Second, "pulling the blob again", func() error {
		var err error
		b, err = io.ReadAll(rc2)
		return err
	})
	if !bytes.Equal(b, want) {
		t.Fatal("the blob pulled again differs from the upstream's")
	}
	if n := f.gets(l.Digest); n != 2 {
		t.Errorf("the blob was fetched %d times from the upstream, want 2 (cut, then again)", n)
	}
	waitFor(t, "the image stored", func() bool { return f.stored(t, "cache/library/big", true, md) })
}

// A client that stops reading a blob served while it is fetched is cut
// after the send progress rule's window (here 1 s) once the buffers
// between it and the device are full, and the spool file is removed once
// the store upload is done: a stalled client does not pin it. Another
// client reading the same blob and the store upload are unaffected.
func TestPullThroughStalledReaderCut(t *testing.T) {
	f := newStreamFixture(t)
	f.dev.srv.sync.sendWindow = time.Second
	img := f.up.pushImage(t, "library/big", "v1", 48<<20) // past what loopback's socket buffers hold
	want := upstreamLayer(t, img)
	md := hashOf(t, img)
	f.gated.Store(true)

	l := f.pullManifest(t, "cache/library/big")
	stalled := f.openLayer(t, "cache/library/big", l) // read no further
	defer stalled.Close()
	good := f.openLayer(t, "cache/library/big", l)
	defer good.Close()
	type result struct {
		b   []byte
		err error
	}
	read := make(chan result, 1)
	go func() { // from the start: the rule holds for it too
		b, err := io.ReadAll(good)
		read <- result{b, err}
	}()
	f.held.Wait()
	close(f.gate)
	var got []byte
	within(t, 60*time.Second, "the other client reading the blob", func() error {
		r := <-read
		got = r.b
		return r.err
	})
	if !bytes.Equal(got, want) {
		t.Fatal("the other client's blob differs from the upstream's")
	}
	waitFor(t, "the image stored", func() bool { return f.stored(t, "cache/library/big", true, md) })
	waitFor(t, "the spool emptied while a client holds a response it does not read", func() bool { return len(f.spoolFiles(t)) == 0 })
	b, err := io.ReadAll(stalled)
	if err == nil {
		t.Fatalf("the stalled client read %d of %d bytes and no error: a cut must fail its read", len(b), l.Size)
	}
	t.Logf("stalled client, reading after its cut: %v (after %d of %d bytes)", err, len(b), l.Size)
}

// A Range request for a blob a pull-through is fetching (containerd
// resumes a cut download with "bytes=N-") gets 206 with the bytes asked
// for: at once for bytes that arrived, after waiting for those that have
// not; a range past the blob's end gets 416. One upstream fetch.
func TestPullThroughRangeWhileSpooling(t *testing.T) {
	f := newStreamFixture(t)
	img := f.up.pushImage(t, "library/big", "v1", 4<<20)
	want := upstreamLayer(t, img)
	f.gated.Store(true)

	l := f.pullManifest(t, "cache/library/big")
	whole := f.openLayer(t, "cache/library/big", l) // starts the fetch
	defer whole.Close()
	f.held.Wait()
	half, size := l.Size/2, l.Size
	path := "/v2/cache/library/big/blobs/" + l.Digest.String()
	get := func(rng string) (*http.Response, []byte, error) {
		req, err := http.NewRequest(http.MethodGet, f.dev.url(path), nil)
		if err != nil {
			return nil, nil, err
		}
		req.SetBasicAuth("admin", f.dev.adminPW)
		req.Header.Set("Range", rng)
		resp, err := f.dev.client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	check := func(rng string, resp *http.Response, b []byte, first, last int64) {
		t.Helper()
		wantCR := fmt.Sprintf("bytes %d-%d/%d", first, last, size)
		if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != wantCR {
			t.Fatalf("Range %s: %d Content-Range %q, want 206 %q", rng, resp.StatusCode, resp.Header.Get("Content-Range"), wantCR)
		}
		if !bytes.Equal(b, want[first:last+1]) {
			t.Fatalf("Range %s: %d bytes that differ from the blob's %d-%d", rng, len(b), first, last)
		}
	}

	// Arrived: answered while the upstream holds the rest.
	rng := fmt.Sprintf("bytes=%d-%d", half/4, half-1)
	within(t, 20*time.Second, "a Range of bytes that arrived", func() error {
		resp, b, err := get(rng)
		if err != nil {
			return err
		}
		check(rng, resp, b, half/4, half-1)
		return nil
	})
	if resp, _, err := get(fmt.Sprintf("bytes=%d-", size)); err != nil || resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("Range past the end: %v %v, want 416", resp, err)
	}

	// Not arrived: waits for them, as a resume does.
	rng = fmt.Sprintf("bytes=%d-", half+100)
	type answer struct {
		resp *http.Response
		b    []byte
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, b, err := get(rng)
		done <- answer{resp, b, err}
	}()
	select {
	case a := <-done:
		t.Fatalf("Range %s answered before its bytes arrived: %v %v", rng, a.resp, a.err)
	case <-time.After(500 * time.Millisecond):
	}
	close(f.gate)
	var a answer
	select {
	case a = <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("Range %s: no answer 20s after the upstream sent the rest", rng)
	}
	if a.err != nil {
		t.Fatalf("Range %s: %v", rng, a.err)
	}
	check(rng, a.resp, a.b, half+100, size-1)
	if n := f.gets(l.Digest); n != 1 {
		t.Errorf("the blob was fetched %d times from the upstream, want 1", n)
	}
}

func TestSingleRange(t *testing.T) {
	for _, c := range []struct {
		v           string
		first, last int64
		ok          bool
	}{
		{"", 0, 0, false}, {"bytes=0-", 0, 9, true}, {"bytes=3-5", 3, 5, true}, {"bytes=3-99", 3, 9, true},
		{"bytes=-4", 6, 9, true}, {"bytes=-99", 0, 9, true}, {"bytes=10-", -1, 0, true}, {"bytes=-0", -1, 0, true},
		{"bytes=5-3", 0, 0, false}, {"bytes=0-1,3-4", 0, 0, false}, {"items=0-1", 0, 0, false}, {"bytes=+1-2", 0, 0, false},
		{"bytes=x-", 0, 0, false}, {"bytes=1", 0, 0, false},
	} {
		first, last, ok := singleRange(c.v, 10)
		if ok != c.ok || (ok && (first != c.first || (first >= 0 && last != c.last))) {
			t.Errorf("singleRange(%q, 10) = %d, %d, %v; want %d, %d, %v", c.v, first, last, ok, c.first, c.last, c.ok)
		}
	}
}
