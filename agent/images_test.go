package agent_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/credhelper"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fakeDevice is go-containerregistry's in-memory registry behind TLS
// (httptest's certificate, valid for example.com) and the device's roles:
// the client "c-1" may pull and push, "admin" may also delete and list the
// catalog. It records each request.
type fakeDevice struct {
	srv      *httptest.Server
	registry string // example.com:port
	port     int

	mu       sync.Mutex
	requests []recorded
}

type recorded struct {
	method, path, query, accept, user string
}

const (
	clientSecret = "client-secret-0123456789"
	adminSecret  = "admin-secret-0123456789"
)

func newFakeDevice(t *testing.T) *fakeDevice {
	t.Helper()
	d := &fakeDevice{}
	reg := quietRegistry()
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		d.mu.Lock()
		d.requests = append(d.requests, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept"), user})
		d.mu.Unlock()
		role := ""
		switch {
		case ok && user == "c-1" && pw == clientSecret:
			role = "push"
		case ok && user == "admin" && pw == adminSecret:
			role = "admin"
		}
		if role == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="edgecr"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if role != "admin" && (r.Method == http.MethodDelete || r.URL.Path == "/v2/_catalog") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"errors":[{"code":"DENIED","message":"%s access requires the admin role"}]}`, strings.ToLower(r.Method))
			return
		}
		reg.ServeHTTP(w, r)
	}))
	d.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the wrong-CA test's handshake
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	_, port, _ := net.SplitHostPort(d.srv.Listener.Addr().String())
	d.port, _ = strconv.Atoi(port)
	d.registry = "example.com:" + port
	return d
}

func (d *fakeDevice) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.srv.Certificate().Raw}))
}

func (d *fakeDevice) reset() []recorded {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.requests
	d.requests = nil
	return r
}

// admin reaches the device as its admin, from the test.
func (d *fakeDevice) admin() []remote.Option {
	tr := d.srv.Client().Transport.(*http.Transport).Clone()
	addr := d.srv.Listener.Addr().String()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.ServerName = "example.com"
	return []remote.Option{remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: "admin", Password: adminSecret})}
}

func (d *fakeDevice) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(d.registry + "/" + s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func quietRegistry() http.Handler { return registry.New(registry.Logger(log.New(io.Discard, "", 0))) }

// mapResolver resolves names from a map.
type mapResolver map[string]string

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ip, ok := m[host]; ok {
		return []netip.Addr{netip.MustParseAddr(ip)}, nil
	}
	return nil, &net.DNSError{Err: "not found", Name: host, IsNotFound: true}
}

// imagesSystem is a client under a temp root that joined the devices
// (state entries and stored credentials), with names resolved by res.
func imagesSystem(t *testing.T, res agent.Resolver, devs ...*fakeDevice) *agent.System {
	t.Helper()
	root, home := t.TempDir(), t.TempDir()
	vars := map[string]string{"HOME": home, credhelper.ConfigDirEnv: filepath.Join(home, "cred")}
	sys := agent.NewSystem(agent.SystemConfig{
		GOOS:   "linux",
		Root:   root,
		User:   agent.User{Name: "tester", Home: home, UID: -1, GID: -1},
		Getenv: func(k string) string { return vars[k] },
	})
	sys.Resolver = res
	st := &agent.State{}
	for _, d := range devs {
		st.Registries = append(st.Registries, &agent.Entry{
			Registry: d.registry, Host: "example.com", Port: d.port, IP: "127.0.0.1",
			CAPEM: d.caPEM(), ClientID: "c-1", Username: "c-1", Role: "push", Steps: agent.Steps(),
			Credential: &agent.CredentialRecord{Path: sys.CredentialsPath, Key: d.registry},
		})
		if err := sys.Credentials(sys.CredentialsPath).Add(&credentials.Credentials{ServerURL: d.registry, Username: "c-1", Secret: clientSecret}); err != nil {
			t.Fatal(err)
		}
	}
	if len(st.Registries) > 0 {
		saveState(t, sys, st)
	}
	return sys
}

func saveState(t *testing.T, sys *agent.System, st *agent.State) {
	t.Helper()
	release, err := sys.State.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := sys.State.Save(st); err != nil {
		t.Fatal(err)
	}
}

func openImages(t *testing.T, sys *agent.System, o agent.ImagesOptions) *agent.Images {
	t.Helper()
	o.Keychain = authn.NewMultiKeychain() // never this machine's Docker config
	im, err := sys.Images(o)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func ociImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	l, err := random.Layer(1024, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func twoPlatformIndex(t *testing.T) (v1.ImageIndex, v1.Image, v1.Image) {
	t.Helper()
	amd, arm := ociImage(t, "amd64"), ociImage(t, "arm64")
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	return idx, amd, arm
}

func mustPush(t *testing.T, ref name.Reference, m remote.Taggable, opts []remote.Option) v1.Hash {
	t.Helper()
	if err := remote.Push(ref, m, opts...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	h, err := m.(interface{ Digest() (v1.Hash, error) }).Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestImagesReferences(t *testing.T) {
	d1, d2 := newFakeDevice(t), newFakeDevice(t)
	one := openImages(t, imagesSystem(t, mapResolver{}, d1), agent.ImagesOptions{})
	two := openImages(t, imagesSystem(t, mapResolver{}, d1, d2), agent.ImagesOptions{})
	none := openImages(t, imagesSystem(t, mapResolver{}), agent.ImagesOptions{})

	tests := []struct {
		im      *agent.Images
		in      string
		want    string
		wantErr error
		errText string
	}{
		{one, "tools/app:1", d1.registry + "/tools/app:1", nil, ""},
		{one, "app", d1.registry + "/app:latest", nil, ""},
		{one, "app@sha256:" + strings.Repeat("a", 64), d1.registry + "/app@sha256:" + strings.Repeat("a", 64), nil, ""},
		{one, "docker.io/library/alpine:3.20", "index.docker.io/library/alpine:3.20", nil, ""},
		{one, "localhost/x:1", "localhost/x:1", nil, ""},
		{two, d2.registry + "/x:1", d2.registry + "/x:1", nil, ""},
		{two, "x:1", "", agent.ErrSeveralJoined, d1.registry},
		{none, "x:1", "", agent.ErrNotJoined, "edgecr join"},
		{one, "Bad/Name:1", "", nil, `parsing reference "Bad/Name:1"`},
		{one, "", "", nil, "empty reference"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := tt.im.Reference(tt.in)
			switch {
			case tt.want != "":
				if err != nil || got.Name() != tt.want {
					t.Fatalf("Reference(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
				}
			case err == nil:
				t.Fatalf("Reference(%q) = %v, want an error", tt.in, got)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Reference(%q): %v, want %v", tt.in, err, tt.wantErr)
			case !strings.Contains(err.Error(), tt.errText):
				t.Fatalf("Reference(%q): %v, want it to say %q", tt.in, err, tt.errText)
			}
		})
	}

	if _, err := one.TagOrDigest("app"); err == nil || !strings.Contains(err.Error(), "neither tag nor digest") {
		t.Errorf("TagOrDigest without a tag: %v", err)
	}
	if _, err := one.TagOrDigest(d1.registry + "/app"); err == nil {
		t.Error("TagOrDigest of host:port/app: no error (the port is not a tag)")
	}
	if _, err := one.Repository("app:1"); err == nil || !strings.Contains(err.Error(), "no tag or digest") {
		t.Errorf("Repository with a tag: %v", err)
	}
	for _, tt := range []struct {
		im       *agent.Images
		in       string
		registry string
		err      error
	}{
		{one, "", d1.registry, nil},
		{one, d1.registry, d1.registry, nil},
		{one, "ghcr.io/", "ghcr.io", nil},
		{one, "app", "", nil},
		{two, "", "", agent.ErrSeveralJoined},
		{none, "", "", agent.ErrNotJoined},
	} {
		reg, ok, err := tt.im.RegistryArg(tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("RegistryArg(%q): %v, want %v", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || ok != (tt.registry != "") || (ok && reg.RegistryStr() != tt.registry) {
			t.Errorf("RegistryArg(%q) = %v %v %v, want %q", tt.in, reg, ok, err, tt.registry)
		}
	}
}

func TestImagesListTags(t *testing.T) {
	d := newFakeDevice(t)
	// The name resolves through the system's resolver; the IP in the
	// state is a fallback only.
	im := openImages(t, imagesSystem(t, mapResolver{"example.com": "127.0.0.1"}, d), agent.ImagesOptions{})
	img, err := random.Image(1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	idx, amd, _ := twoPlatformIndex(t)
	imgDigest := mustPush(t, d.ref(t, "app:1"), img, d.admin())
	idxDigest := mustPush(t, d.ref(t, "app:multi"), idx, d.admin())
	d.reset()

	tags, err := im.ListTags(context.Background(), d.ref(t, "app:1").Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 2 || tags[0].Tag != "1" || tags[1].Tag != "multi" {
		t.Fatalf("tags: %+v", tags)
	}
	size := func(img v1.Image) int64 {
		m, _ := img.Manifest()
		raw, _ := img.RawManifest()
		n := int64(len(raw)) + m.Config.Size
		for _, l := range m.Layers {
			n += l.Size
		}
		return n
	}
	if tg := tags[0]; tg.Digest != imgDigest.String() || tg.MediaType != string(types.DockerManifestSchema2) || tg.Size != size(img) || tg.Platforms != nil {
		t.Errorf("image tag: %+v, want size %d", tg, size(img))
	}
	tg := tags[1]
	if tg.Digest != idxDigest.String() || tg.MediaType != string(types.OCIImageIndex) || len(tg.Platforms) != 2 {
		t.Fatalf("index tag: %+v", tg)
	}
	amdDigest, _ := amd.Digest()
	if p := tg.Platforms[0]; p.Platform != "linux/amd64" || p.Digest != amdDigest.String() || p.Size != size(amd) {
		t.Errorf("amd64: %+v, want size %d", p, size(amd))
	}
	idxSize, _ := idx.Size()
	if want := idxSize + tg.Platforms[0].Size + tg.Platforms[1].Size; tg.Size != want {
		t.Errorf("index size %d, want %d (nothing shared)", tg.Size, want)
	}
	for _, r := range d.reset() {
		if r.user != "c-1" && r.path != "/v2/" {
			t.Errorf("request %s %s as %q, want the stored credential", r.method, r.path, r.user)
		}
	}

	if _, err := im.ListTags(context.Background(), d.ref(t, "nope:1").Context()); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("unknown repository: %v", err)
	}
}

// The IP join recorded is used when the name does not resolve.
func TestImagesDialFallsBackToTheJoinIP(t *testing.T) {
	d := newFakeDevice(t)
	im := openImages(t, imagesSystem(t, mapResolver{}, d), agent.ImagesOptions{})
	mustPush(t, d.ref(t, "app:1"), ociImage(t, "amd64"), d.admin())
	if tags, err := im.ListTags(context.Background(), d.ref(t, "app:1").Context()); err != nil || len(tags) != 1 {
		t.Fatalf("ListTags: %v %v", tags, err)
	}
}

// The device's CA pinned at join is the only root: another CA fails.
func TestImagesRefusesAnotherCA(t *testing.T) {
	d := newFakeDevice(t)
	sys := imagesSystem(t, mapResolver{"example.com": "127.0.0.1"}, d)
	st, _ := sys.State.Load()
	// The device answers with a certificate from another CA than join pinned.
	other, _ := agenttest.NewCAPEM(t)
	st.Registries[0].CAPEM = string(other)
	saveState(t, sys, st)
	im := openImages(t, sys, agent.ImagesOptions{})
	_, err := im.ListTags(context.Background(), d.ref(t, "app:1").Context())
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("ListTags with the wrong CA: %v", err)
	}
}

func TestImagesRemove(t *testing.T) {
	d := newFakeDevice(t)
	sys := imagesSystem(t, mapResolver{"example.com": "127.0.0.1"}, d)
	im := openImages(t, sys, agent.ImagesOptions{})
	idx, _, arm := twoPlatformIndex(t)
	img := ociImage(t, "amd64")
	dg := mustPush(t, d.ref(t, "app:1"), img, d.admin())
	mustPush(t, d.ref(t, "app:alias"), img, d.admin())
	mustPush(t, d.ref(t, "app:multi"), idx, d.admin())
	mustPush(t, d.ref(t, "app:other"), ociImage(t, "arm64"), d.admin())
	ctx := context.Background()
	d.reset()

	plan, err := im.PlanRemove(ctx, d.ref(t, "app:1"), true)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Digest != dg.String() || !slices.Equal(plan.Tags, []string{"1", "alias"}) || plan.ReferencedBy != nil || plan.MediaType != string(types.OCIManifestSchema1) {
		t.Errorf("plan: %+v", plan)
	}
	heads := 0
	for _, r := range d.reset() {
		if r.method != http.MethodHead || !strings.Contains(r.path, "/manifests/") {
			continue
		}
		heads++
		for _, mt := range []types.MediaType{types.DockerManifestSchema2, types.DockerManifestList, types.OCIManifestSchema1, types.OCIImageIndex} {
			if !strings.Contains(r.accept, string(mt)) {
				t.Errorf("HEAD %s: Accept %q lacks %s", r.path, r.accept, mt)
			}
		}
	}
	if heads != 5 { // the reference, then each of the 4 tags
		t.Errorf("%d manifest HEADs, want 5", heads)
	}

	// A push client may not delete.
	if err := im.Remove(ctx, plan); !errors.Is(err, agent.ErrDenied) || !strings.Contains(err.Error(), "client c-1 (role push)") {
		t.Fatalf("Remove as the push client: %v", err)
	}
	// The admin may, with the override, and only for this device.
	admin := openImages(t, sys, agent.ImagesOptions{Username: "admin", Password: adminSecret})
	d.reset()
	if err := admin.Remove(ctx, plan); err != nil || !plan.Deleted {
		t.Fatalf("Remove as admin: %v", err)
	}
	var deletes []string
	for _, r := range d.reset() {
		if r.method == http.MethodDelete {
			deletes = append(deletes, r.path+" as "+r.user)
		}
	}
	if want := []string{"/v2/app/manifests/" + dg.String() + " as admin"}; !slices.Equal(deletes, want) {
		t.Errorf("DELETEs %v, want %v", deletes, want)
	}

	// A platform of a tagged index: named in the plan.
	armDigest, _ := arm.Digest()
	plan, err = im.PlanRemove(ctx, d.ref(t, "app@"+armDigest.String()), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Tags) != 0 || !slices.Equal(plan.ReferencedBy, []string{"multi (linux/arm64)"}) {
		t.Errorf("plan of an index's platform: %+v", plan)
	}

	for ref, want := range map[string]string{
		"app:nope":                              "tag nope: not found in " + d.registry + "/app (its tags: ",
		"nope:1":                                "repository nope: not found on " + d.registry,
		"app@sha256:" + strings.Repeat("0", 64): "manifest sha256:" + strings.Repeat("0", 64) + ": not found",
	} {
		_, err := im.PlanRemove(ctx, d.ref(t, ref), false)
		if !errors.Is(err, agent.ErrNotFound) || !strings.Contains(err.Error(), want) {
			t.Errorf("PlanRemove(%s): %v, want %q", ref, err, want)
		}
	}
}

// rm REPO:TAG deletes that tag alone (DELETE /v2/<repo>/manifests/<tag>),
// as the web UI does; the image and its other tags stay.
func TestImagesRemoveTagOnly(t *testing.T) {
	d := newFakeDevice(t)
	sys := imagesSystem(t, mapResolver{"example.com": "127.0.0.1"}, d)
	admin := openImages(t, sys, agent.ImagesOptions{Username: "admin", Password: adminSecret})
	idx, _, _ := twoPlatformIndex(t)
	img := ociImage(t, "amd64")
	dg := mustPush(t, d.ref(t, "app:1"), img, d.admin())
	mustPush(t, d.ref(t, "app:alias"), img, d.admin())
	mustPush(t, d.ref(t, "app:multi"), idx, d.admin())
	ctx := context.Background()

	plan, err := admin.PlanRemove(ctx, d.ref(t, "app:1"), false)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Tag != "1" || plan.Digest != dg.String() || !slices.Equal(plan.Tags, []string{"1", "alias"}) || !slices.Equal(plan.OtherTags(), []string{"alias"}) {
		t.Fatalf("plan: %+v", plan)
	}
	d.reset()
	if err := admin.Remove(ctx, plan); err != nil || !plan.Deleted {
		t.Fatalf("Remove: %v", err)
	}
	var deletes []string
	for _, r := range d.reset() {
		if r.method == http.MethodDelete {
			deletes = append(deletes, r.path)
		}
	}
	if want := []string{"/v2/app/manifests/1"}; !slices.Equal(deletes, want) {
		t.Errorf("DELETEs %v, want %v", deletes, want)
	}
	if _, err := remote.Head(d.ref(t, "app:alias"), d.admin()...); err != nil {
		t.Errorf("the other tag went too: %v", err)
	}
	if _, err := remote.Head(d.ref(t, "app@"+dg.String()), d.admin()...); err != nil {
		t.Errorf("the manifest went too: %v", err)
	}

	// A tag pushed elsewhere between plan and delete is not deleted.
	plan, err = admin.PlanRemove(ctx, d.ref(t, "app:alias"), false)
	if err != nil {
		t.Fatal(err)
	}
	mustPush(t, d.ref(t, "app:alias"), ociImage(t, "arm64"), d.admin())
	if err := admin.Remove(ctx, plan); err == nil || !strings.Contains(err.Error(), "the tag moved") || plan.Deleted {
		t.Fatalf("Remove of a moved tag: %v", err)
	}
	if _, err := remote.Head(d.ref(t, "app:alias"), d.admin()...); err != nil {
		t.Errorf("the moved tag was deleted: %v", err)
	}
}

// CheckDelete asks the registry before anything is shown: a push client
// is refused, the admin is not, and nothing is deleted either way.
func TestImagesCheckDelete(t *testing.T) {
	d := newFakeDevice(t)
	sys := imagesSystem(t, mapResolver{"example.com": "127.0.0.1"}, d)
	img := ociImage(t, "amd64")
	mustPush(t, d.ref(t, "app:1"), img, d.admin())
	ctx := context.Background()
	repo := d.ref(t, "app:1").Context()

	err := openImages(t, sys, agent.ImagesOptions{}).CheckDelete(ctx, repo)
	if !errors.Is(err, agent.ErrDenied) || !strings.Contains(err.Error(), "client c-1 (role push)") {
		t.Fatalf("CheckDelete as the push client: %v", err)
	}
	if err := openImages(t, sys, agent.ImagesOptions{Username: "admin", Password: adminSecret}).CheckDelete(ctx, repo); err != nil {
		t.Fatalf("CheckDelete as admin: %v", err)
	}
	err = openImages(t, sys, agent.ImagesOptions{Username: "admin", Password: "wrong"}).CheckDelete(ctx, repo)
	if !errors.Is(err, agent.ErrUnauthorized) {
		t.Fatalf("CheckDelete with a wrong password: %v", err)
	}
	if _, err := remote.Head(d.ref(t, "app:1"), d.admin()...); err != nil {
		t.Fatalf("CheckDelete deleted something: %v", err)
	}
}

func TestImagesListRepositories(t *testing.T) {
	d := newFakeDevice(t)
	sys := imagesSystem(t, mapResolver{"example.com": "127.0.0.1"}, d)
	mustPush(t, d.ref(t, "b/x:1"), ociImage(t, "amd64"), d.admin())
	mustPush(t, d.ref(t, "a/y:1"), ociImage(t, "amd64"), d.admin())
	reg, _ := name.NewRegistry(d.registry)
	ctx := context.Background()
	_, err := openImages(t, sys, agent.ImagesOptions{}).ListRepositories(ctx, reg)
	if !errors.Is(err, agent.ErrDenied) || !strings.Contains(err.Error(), "admin role") {
		t.Fatalf("catalog as the push client: %v", err)
	}
	repos, err := openImages(t, sys, agent.ImagesOptions{Username: "admin", Password: adminSecret}).ListRepositories(ctx, reg)
	if err != nil || len(repos) != 2 || repos[0].Repository != "a/y" || repos[1].Repository != "b/x" {
		t.Fatalf("catalog as admin: %+v %v", repos, err)
	}
}

// cp from a plain upstream registry into the device keeps the index
// digest, reports progress, and a second copy skips every blob; with a
// platform it copies that image only.
func TestImagesCopy(t *testing.T) {
	d := newFakeDevice(t)
	up := httptest.NewServer(quietRegistry())
	defer up.Close()
	upstream := strings.TrimPrefix(up.URL, "http://")
	idx, _, arm := twoPlatformIndex(t)
	srcRef, _ := name.ParseReference(upstream + "/lib/app:1")
	want := mustPush(t, srcRef, idx, nil)
	im := openImages(t, imagesSystem(t, mapResolver{"example.com": "127.0.0.1"}, d), agent.ImagesOptions{})
	ctx := context.Background()

	var mu sync.Mutex
	var last, total int64
	calls := 0
	res, err := im.Copy(ctx, srcRef, d.ref(t, "mirror/app:1"), agent.CopyOptions{Progress: func(done, tot int64) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if done < last || done > tot {
			t.Errorf("progress %d/%d after %d", done, tot, last)
		}
		last, total = done, tot
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != want.String() || res.Blobs != 4 || res.Copied != 4 || res.Skipped != 0 || res.Manifests != 3 ||
		!slices.Equal(res.Platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("first copy: %+v", res)
	}
	if calls == 0 || last == 0 || total < res.Bytes {
		t.Errorf("progress: %d calls, last %d of %d (bytes %d)", calls, last, total, res.Bytes)
	}
	got, err := remote.Head(d.ref(t, "mirror/app:1"), d.admin()...)
	if err != nil || got.Digest != want {
		t.Fatalf("the copy: %v %v, want %s", got, err, want)
	}

	res, err = im.Copy(ctx, srcRef, d.ref(t, "mirror/app:1"), agent.CopyOptions{})
	if err != nil || res.Copied != 0 || res.Skipped != 4 || res.SkippedBytes != res.Bytes {
		t.Errorf("second copy: %+v %v", res, err)
	}

	armDigest, _ := arm.Digest()
	res, err = im.Copy(ctx, srcRef, d.ref(t, "arm/app:1"), agent.CopyOptions{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}})
	if err != nil || res.Digest != armDigest.String() || res.Manifests != 1 || res.Blobs != 2 {
		t.Errorf("copy of linux/arm64: %+v %v", res, err)
	}
	_, err = im.Copy(ctx, srcRef, d.ref(t, "arm/app:2"), agent.CopyOptions{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}})
	if !errors.Is(err, agent.ErrNotFound) || !strings.Contains(err.Error(), "it has linux/amd64, linux/arm64") {
		t.Errorf("copy of a missing platform: %v", err)
	}
	single, _ := name.ParseReference(upstream + "/lib/single:1")
	mustPush(t, single, arm, nil)
	_, err = im.Copy(ctx, single, d.ref(t, "arm/app:3"), agent.CopyOptions{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}})
	if !errors.Is(err, agent.ErrNotFound) || !strings.Contains(err.Error(), "is a single linux/arm64 image, not linux/amd64") {
		t.Errorf("copy of a single image for another platform: %v", err)
	}
	missing, _ := name.ParseReference(upstream + "/lib/none:1")
	if _, err := im.Copy(ctx, missing, d.ref(t, "x:1"), agent.CopyOptions{}); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("copy of a missing source: %v", err)
	}
}
