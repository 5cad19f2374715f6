package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/distribution/distribution/v3/registry/handlers"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// Crash injection: a storage driver under distribution that lets the
// first n writes through and then "kills the process": every later write
// fails without touching the disk, as if edgecrd had died at that point.
// A test runs an operation once per n until it completes, restarts the
// registry on what is on disk, and checks what a client sees.

// faultPlan is shared by a test and the drivers it creates.
type faultPlan struct {
	mu     sync.Mutex
	left   int // writes still allowed; < 0: no limit
	killed bool
	writes int // writes let through since arm
}

func (p *faultPlan) arm(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.left, p.killed, p.writes = n, false, 0
}

func (p *faultPlan) disarm() { p.arm(-1) }

func (p *faultPlan) state() (killed bool, writes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed, p.writes
}

var errKilled = errors.New("injected crash: the process is dead")

// write reports whether a write may go to disk.
func (p *faultPlan) write() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killed {
		return errKilled
	}
	if p.left == 0 {
		p.killed = true
		return errKilled
	}
	if p.left > 0 {
		p.left--
	}
	p.writes++
	return nil
}

type faultyDriver struct {
	storagedriver.StorageDriver
	plan *faultPlan
}

func (f *faultyDriver) PutContent(ctx context.Context, p string, b []byte) error {
	if err := f.plan.write(); err != nil {
		return err
	}
	return f.StorageDriver.PutContent(ctx, p, b)
}

func (f *faultyDriver) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	if err := f.plan.write(); err != nil {
		return nil, err
	}
	w, err := f.StorageDriver.Writer(ctx, p, append)
	if err != nil {
		return nil, err
	}
	return &faultyWriter{FileWriter: w, plan: f.plan}, nil
}

type faultyWriter struct {
	storagedriver.FileWriter
	plan *faultPlan
}

func (w *faultyWriter) Commit(ctx context.Context) error {
	if err := w.plan.write(); err != nil {
		return err
	}
	return w.FileWriter.Commit(ctx)
}

func (f *faultyDriver) Move(ctx context.Context, from, to string) error {
	if err := f.plan.write(); err != nil {
		return err
	}
	return f.StorageDriver.Move(ctx, from, to)
}

func (f *faultyDriver) Delete(ctx context.Context, p string) error {
	if err := f.plan.write(); err != nil {
		return err
	}
	return f.StorageDriver.Delete(ctx, p)
}

// faultyFactory builds the crash-injecting drivers: "durable" is edgecrfs
// over the faults (edgecrd now), "plain" the filesystem driver alone
// (edgecrd before issue 18, and distribution as it ships).
type faultyFactory struct{ durable bool }

func (f faultyFactory) Create(ctx context.Context, params map[string]any) (storagedriver.StorageDriver, error) {
	root := params["rootdirectory"].(string)
	inner := &faultyDriver{
		StorageDriver: filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}),
		plan:          params["plan"].(*faultPlan),
	}
	if f.durable {
		return newDurableFS(inner, root), nil
	}
	return inner, nil
}

func init() {
	factory.Register("test-faulty-durable", faultyFactory{durable: true})
	factory.Register("test-faulty-plain", faultyFactory{durable: false})
}

// crashRegistry is distribution's handler on a storage root with a fault
// plan; restart builds a new one on the same root, as a new process would.
type crashRegistry struct {
	t      *testing.T
	root   string
	driver string
	plan   *faultPlan
	srv    *httptest.Server
	// manifest is the scenario's image, its blobs pushed.
	manifest []byte
}

func newCrashRegistry(t *testing.T, durable bool) *crashRegistry {
	t.Helper()
	return newCrashRegistryAt(t, t.TempDir(), durable)
}

// newCrashRegistryAt is newCrashRegistry on the storage root given.
func newCrashRegistryAt(t *testing.T, root string, durable bool) *crashRegistry {
	t.Helper()
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" {
		t.Setenv("OTEL_TRACES_EXPORTER", "none")
	}
	r := &crashRegistry{t: t, root: root, driver: "test-faulty-plain", plan: &faultPlan{left: -1}}
	if durable {
		r.driver = "test-faulty-durable"
	}
	r.restart()
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *crashRegistry) restart() {
	r.t.Helper()
	if r.srv != nil {
		r.srv.Close()
	}
	r.plan.disarm()
	cfg, err := registryConfig(r.root, "crash-test-secret")
	if err != nil {
		r.t.Fatal(err)
	}
	for k := range cfg.Storage {
		switch k {
		case "delete", "maintenance", "redirect":
		default:
			delete(cfg.Storage, k)
		}
	}
	cfg.Storage[r.driver] = map[string]any{"rootdirectory": r.root, "plan": r.plan}
	routeDistributionLogs(slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.srv = httptest.NewServer(handlers.NewApp(context.Background(), cfg))
}

func (r *crashRegistry) do(method, p string, body []byte, ctype string) (int, http.Header, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+p, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", ociManifestType)
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, p, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// pushBlob uploads b to repo (monolithic upload) and returns its digest.
func (r *crashRegistry) pushBlob(repo string, b []byte) string {
	r.t.Helper()
	code, h, body := r.do("POST", "/v2/"+repo+"/blobs/uploads/", nil, "")
	if code != http.StatusAccepted {
		r.t.Fatalf("starting upload: %d %s", code, body)
	}
	loc := h.Get("Location")
	if i := strings.Index(loc, "/v2/"); i >= 0 {
		loc = loc[i:]
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	d := sha(b)
	if code, _, body := r.do("PUT", loc+sep+"digest="+d, b, "application/octet-stream"); code != http.StatusCreated {
		r.t.Fatalf("committing upload: %d %s", code, body)
	}
	return d
}

const ociManifestType = "application/vnd.oci.image.manifest.v1+json"

// image uploads a config and a layer unique to seed and returns the
// manifest that references them (not pushed).
func (r *crashRegistry) image(repo, seed string) []byte {
	r.t.Helper()
	cfg := r.pushBlob(repo, []byte(`{"architecture":"amd64","os":"linux","seed":"`+seed+`"}`))
	layer := []byte("layer of " + seed)
	ld := r.pushBlob(repo, layer)
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": ociManifestType,
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": len(`{"architecture":"amd64","os":"linux","seed":"` + seed + `"}`)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(layer)}},
	})
	return m
}

func (r *crashRegistry) putManifest(repo, ref string, m []byte) int {
	r.t.Helper()
	code, _, _ := r.do("PUT", "/v2/"+repo+"/manifests/"+ref, m, ociManifestType)
	return code
}

// clientView checks what a client sees: every listed tag resolves to a
// manifest whose blobs are all there. It returns the tags and the digests
// they resolve to, and a list of violations.
func (r *crashRegistry) clientView(repo string) (map[string]string, []string) {
	r.t.Helper()
	var bad []string
	code, _, body := r.do("GET", "/v2/"+repo+"/tags/list", nil, "")
	if code == http.StatusNotFound {
		return map[string]string{}, nil
	}
	if code != http.StatusOK {
		return nil, []string{fmt.Sprintf("tags/list: %d %s", code, body)}
	}
	var list struct{ Tags []string }
	if err := json.Unmarshal(body, &list); err != nil {
		r.t.Fatal(err)
	}
	tags := map[string]string{}
	for _, tag := range list.Tags {
		d, probs := r.resolves(repo, tag)
		if len(probs) > 0 {
			bad = append(bad, probs...)
			continue
		}
		tags[tag] = d
	}
	return tags, bad
}

// resolves checks one reference and everything its manifest references.
func (r *crashRegistry) resolves(repo, ref string) (string, []string) {
	code, h, body := r.do("GET", "/v2/"+repo+"/manifests/"+ref, nil, "")
	if code != http.StatusOK {
		return "", []string{fmt.Sprintf("%s:%s is listed or acknowledged but GET answers %d %s", repo, ref, code, strings.TrimSpace(string(body)))}
	}
	d := h.Get("Docker-Content-Digest")
	refs, err := parseManifestRefs(body)
	if err != nil {
		return d, []string{fmt.Sprintf("%s:%s: %v", repo, ref, err)}
	}
	var bad []string
	for _, b := range refs.blobs {
		if code, _, _ := r.do("HEAD", "/v2/"+repo+"/blobs/"+b.String(), nil, ""); code != http.StatusOK {
			bad = append(bad, fmt.Sprintf("%s:%s: blob %s answers %d", repo, ref, b, code))
		}
	}
	return d, bad
}

// crashScenario is one operation run under crash injection.
type crashScenario struct {
	name string
	// setup pushes what exists before the operation; it returns the
	// manifests the operation may leave a tag on.
	setup func(r *crashRegistry) (allowed map[string]bool)
	// op runs the operation and reports whether the server acknowledged it.
	op func(r *crashRegistry) bool
	// after checks the state an acknowledged operation must leave.
	after func(r *crashRegistry, tags map[string]string) []string
}

var crashScenarios = []crashScenario{
	{
		name: "PUT manifest to a new tag",
		setup: func(r *crashRegistry) map[string]bool {
			return map[string]bool{sha(r.manifest): true}
		},
		op: func(r *crashRegistry) bool {
			return r.putManifest("app", "v1", r.manifest) == http.StatusCreated
		},
		after: func(r *crashRegistry, tags map[string]string) []string {
			if tags["v1"] != sha(r.manifest) {
				return []string{fmt.Sprintf("acknowledged tag v1 resolves to %q, want %s", tags["v1"], sha(r.manifest))}
			}
			return nil
		},
	},
	{
		name: "PUT manifest moving a tag",
		setup: func(r *crashRegistry) map[string]bool {
			old := r.image("app", "old")
			if code := r.putManifest("app", "v1", old); code != http.StatusCreated {
				r.t.Fatalf("PUT: %d", code)
			}
			return map[string]bool{sha(old): true, sha(r.image("app", "new")): true}
		},
		op: func(r *crashRegistry) bool {
			return r.putManifest("app", "v1", r.manifest) == http.StatusCreated
		},
		after: func(r *crashRegistry, tags map[string]string) []string {
			if tags["v1"] != sha(r.manifest) {
				return []string{fmt.Sprintf("acknowledged tag v1 resolves to %q, want %s", tags["v1"], sha(r.manifest))}
			}
			return nil
		},
	},
	{
		name: "DELETE by digest of a manifest with two tags",
		setup: func(r *crashRegistry) map[string]bool {
			for _, tag := range []string{"v1", "latest"} {
				if code := r.putManifest("app", tag, r.manifest); code != http.StatusCreated {
					r.t.Fatalf("PUT: %d", code)
				}
			}
			return map[string]bool{sha(r.manifest): true}
		},
		op: func(r *crashRegistry) bool {
			code, _, _ := r.do("DELETE", "/v2/app/manifests/"+sha(r.manifest), nil, "")
			return code == http.StatusAccepted
		},
		after: func(r *crashRegistry, tags map[string]string) []string {
			if len(tags) > 0 {
				return []string{fmt.Sprintf("tags %v remain after the manifest was deleted", tags)}
			}
			if code, _, _ := r.do("GET", "/v2/app/manifests/"+sha(r.manifest), nil, ""); code != http.StatusNotFound {
				return []string{fmt.Sprintf("deleted manifest answers %d", code)}
			}
			return nil
		},
	},
	{
		name: "DELETE of a tag",
		setup: func(r *crashRegistry) map[string]bool {
			for _, tag := range []string{"v1", "latest"} {
				if code := r.putManifest("app", tag, r.manifest); code != http.StatusCreated {
					r.t.Fatalf("PUT: %d", code)
				}
			}
			return map[string]bool{sha(r.manifest): true}
		},
		op: func(r *crashRegistry) bool {
			code, _, _ := r.do("DELETE", "/v2/app/manifests/v1", nil, "")
			return code == http.StatusAccepted
		},
		after: func(r *crashRegistry, tags map[string]string) []string {
			if _, ok := tags["v1"]; ok || tags["latest"] != sha(r.manifest) {
				return []string{fmt.Sprintf("after deleting v1: tags %v", tags)}
			}
			return nil
		},
	},
}

// runCrashScenario kills the operation after each of its writes in turn and
// returns the violations found, by crash point.
func runCrashScenario(t *testing.T, sc crashScenario, durable bool) []string {
	var found []string
	for n := 0; n < 100; n++ {
		r := newCrashRegistry(t, durable)
		r.manifest = r.image("app", "new")
		allowed := sc.setup(r)
		r.plan.arm(n)
		acked := sc.op(r)
		killed, writes := r.plan.state()
		r.restart()
		tags, bad := r.clientView("app")
		for tag, d := range tags {
			if !allowed[d] {
				bad = append(bad, fmt.Sprintf("tag %s resolves to %s, which the test never tagged", tag, d))
			}
		}
		if acked {
			bad = append(bad, sc.after(r, tags)...)
		}
		for _, b := range bad {
			found = append(found, fmt.Sprintf("killed after write %d of the operation: %s", n, b))
		}
		if !killed {
			if !acked {
				t.Fatalf("%s: not acknowledged without a crash (%d writes)", sc.name, writes)
			}
			return found
		}
	}
	t.Fatalf("%s: still crashing after 100 writes", sc.name)
	return nil
}

// TestCrashConsistencyOfTags: whatever write of a tag PUT, tag move, tag
// DELETE or DELETE by digest the process dies after, every listed tag
// resolves to a manifest whose blobs are all there, and an acknowledged
// operation is whole.
func TestCrashConsistencyOfTags(t *testing.T) {
	for _, sc := range crashScenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, f := range runCrashScenario(t, sc, true) {
				t.Error(f)
			}
		})
	}
}

// TestCrashConsistencyPlainDriverBreaks is the same injection on the
// filesystem driver as distribution ships it (edgecrd's storage before
// issue 18): the new-tag PUT and the DELETE by digest leave a listed tag
// that does not resolve. It shows that the test above detects the bug.
func TestCrashConsistencyPlainDriverBreaks(t *testing.T) {
	for _, sc := range crashScenarios[:3] {
		if sc.name == "PUT manifest moving a tag" {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			found := runCrashScenario(t, sc, false)
			if len(found) == 0 {
				t.Fatal("no crash point left an unresolvable tag on the plain filesystem driver")
			}
			t.Logf("as expected: %s", found[0])
		})
	}
}
