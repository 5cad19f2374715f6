package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// Issue 13, acceptance 2 and 3: the referrers API driven by real clients,
// oras and cosign, built by .ci/build-referrer-tools. Both clients fall
// back to the sha256-<hex> tag schema when a registry does not answer a
// subject push with OCI-Subject, and still exit 0, so these tests look at
// the referrers API itself and at the absence of the fallback tag.

// tool runs a client binary in dir with env (and nothing of this
// process's environment but PATH), and fails the test when it fails.
func tool(t *testing.T, dir string, env []string, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// noEgress points the proxy variables of a client at a proxy on loopback
// that refuses and records every request. Go's HTTP clients (oras and
// cosign are Go) send every request for a host that is not loopback to
// the proxy and resolve nothing themselves, so when the test ends the
// record shows anything they tried to reach off this machine: the test
// fails then, naming it.
func noEgress(t *testing.T) []string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var tried []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tried = append(tried, r.Method+" "+r.Host+r.URL.Path)
		mu.Unlock()
		http.Error(w, "no traffic off loopback in tests", http.StatusForbidden)
	})}
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		if len(tried) > 0 {
			t.Errorf("a client tried to reach hosts off loopback: %q", tried)
		}
	})
	proxy := "http://" + l.Addr().String()
	return []string{"HTTPS_PROXY=" + proxy, "https_proxy=" + proxy, "HTTP_PROXY=" + proxy, "http_proxy=" + proxy, "NO_PROXY=", "no_proxy="}
}

// ociDescriptor is one entry of a referrers index.
type ociDescriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType"`
	Annotations  map[string]string `json:"annotations"`
}

// referrers asks the device's referrers API, as the admin, for the
// referrers of subject in repo (of artifactType when not "").
func (d *device) referrers(t *testing.T, repo string, subject v1.Hash, artifactType string) (descs []ociDescriptor, filtersApplied string) {
	t.Helper()
	path := "/v2/" + repo + "/referrers/" + subject.String()
	if artifactType != "" {
		path += "?artifactType=" + url.QueryEscape(artifactType)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := d.get(ctx, path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var idx struct {
		MediaType string          `json:"mediaType"`
		Manifests []ociDescriptor `json:"manifests"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, want 200", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil {
		t.Fatalf("GET %s: decoding the index: %v", path, err)
	}
	if idx.MediaType != string(types.OCIImageIndex) {
		t.Fatalf("GET %s: media type %q, want %q", path, idx.MediaType, types.OCIImageIndex)
	}
	return idx.Manifests, resp.Header.Get("OCI-Filters-Applied")
}

// tags lists repo's tags through the registry API, as the admin.
func (d *device) tags(t *testing.T, repo string) []string {
	t.Helper()
	tags, err := remote.List(d.ref(t, repo+":x").Context(), d.remote()...)
	if err != nil {
		t.Fatalf("listing the tags of %s: %v", repo, err)
	}
	return tags
}

// fallbackTag is the referrers tag schema's tag for subject.
func fallbackTag(subject v1.Hash) string { return subject.Algorithm + "-" + subject.Hex }

func (d *device) storageUsed(t *testing.T) int64 {
	t.Helper()
	out, errOut, err := edgecrd(t, "info", "--data-dir", d.dataDir, "-o", "json")
	if err != nil {
		t.Fatalf("edgecrd info: %v\n%s", err, errOut)
	}
	var info struct {
		StorageUsedBytes int64 `json:"storageUsedBytes"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("parsing edgecrd info -o json: %v\n%s", err, out)
	}
	return info.StorageUsedBytes
}

func (d *device) gc(t *testing.T, args ...string) {
	t.Helper()
	if _, errOut, err := edgecrd(t, append([]string{"gc", "--data-dir", d.dataDir}, args...)...); err != nil {
		t.Fatalf("edgecrd gc %v: %v\n%s", args, err, errOut)
	}
}

// oras attach of two artifacts of different types through the referrers
// API; oras discover lists both and its artifactType filter one; the API
// says the same and no fallback tag exists; gc --delete-untagged keeps
// them with their tagged subject; rm of the subject and gc remove them and
// give their storage back.
func TestOrasAttachDiscoverThroughReferrersAPI(t *testing.T) {
	oras := testenv.NeedTool(t, "EDGECR_ORAS", "oras", testenv.OrasVersion, "the oras referrers test drives it")
	d := startDevice(t, "")
	c := newClient(t)
	c.join(d)

	const repo = "signed/app"
	// The subject and its blobs are pushed first: the storage measured
	// after it is what the referrers must give back.
	subjectImg := ociImage(t, "amd64")
	subject := push(t, d.ref(t, repo+":1"), subjectImg, d.remote())
	withSubject := d.storageUsed(t)

	work := t.TempDir()
	sbom := bytes.Repeat([]byte(`{"spdxVersion":"SPDX-2.3","packages":[]}`+"\n"), 4<<10) // 160 KiB
	os.WriteFile(filepath.Join(work, "sbom.spdx.json"), sbom, 0o644)
	os.WriteFile(filepath.Join(work, "provenance.json"), bytes.Repeat([]byte(`{"builder":"e2e"}`+"\n"), 8<<10), 0o644)
	env := noEgress(t)
	auth := []string{"--ca-file", d.info.CAFile, "--username", d.info.Username, "--password", d.info.Password}
	target := d.addr + "/" + repo + "@" + subject.String()
	const sbomType, provType = "application/spdx+json", "application/vnd.in-toto+json"
	for _, a := range []struct{ typ, file string }{{sbomType, "sbom.spdx.json"}, {provType, "provenance.json"}} {
		tool(t, work, env, oras, append([]string{"attach", "--distribution-spec", "v1.1-referrers-api",
			"--artifact-type", a.typ, target, a.file + ":application/octet-stream"}, auth...)...)
	}

	discover := func(filter string) []ociDescriptor {
		t.Helper()
		args := append([]string{"discover", "--distribution-spec", "v1.1-referrers-api", "--format", "json", target}, auth...)
		if filter != "" {
			args = append(args, "--artifact-type", filter)
		}
		out := tool(t, work, env, oras, args...)
		// oras 1.3's JSON is the subject with its "referrers"; 1.1 and
		// 1.2 called them "manifests".
		var tree struct {
			Referrers []ociDescriptor `json:"referrers"`
			Manifests []ociDescriptor `json:"manifests"`
		}
		if err := json.Unmarshal([]byte(out), &tree); err != nil {
			t.Fatalf("parsing oras discover --format json: %v\n%s", err, out)
		}
		return append(tree.Referrers, tree.Manifests...)
	}
	typesOf := func(descs []ociDescriptor) []string {
		var ts []string
		for _, d := range descs {
			ts = append(ts, d.ArtifactType)
		}
		slices.Sort(ts)
		return ts
	}
	if got, want := typesOf(discover("")), []string{sbomType, provType}; !slices.Equal(got, want) {
		t.Fatalf("oras discover lists artifact types %q, want %q", got, want)
	}
	if got, want := typesOf(discover(sbomType)), []string{sbomType}; !slices.Equal(got, want) {
		t.Fatalf("oras discover --artifact-type %s lists %q, want %q", sbomType, got, want)
	}
	all, _ := d.referrers(t, repo, subject, "")
	if got, want := typesOf(all), []string{sbomType, provType}; !slices.Equal(got, want) {
		t.Fatalf("the referrers API lists artifact types %q, want %q", got, want)
	}
	one, applied := d.referrers(t, repo, subject, provType)
	if got := typesOf(one); !slices.Equal(got, []string{provType}) || applied != "artifactType" {
		t.Fatalf("the referrers API filtered by %s lists %q with OCI-Filters-Applied %q, want [%s] and artifactType", provType, got, applied, provType)
	}
	if tags := d.tags(t, repo); slices.Contains(tags, fallbackTag(subject)) || len(tags) != 1 {
		t.Fatalf("tags of %s are %q, want only 1: oras fell back to the tag schema", repo, tags)
	}

	// A referrer of a tagged image is kept, also by --delete-untagged.
	d.gc(t, "--delete-untagged", "--grace", "0s")
	after, _ := d.referrers(t, repo, subject, "")
	if got := typesOf(after); !slices.Equal(got, []string{sbomType, provType}) {
		t.Fatalf("after gc --delete-untagged the referrers API lists %q, want both", got)
	}
	if got := typesOf(discover("")); !slices.Equal(got, []string{sbomType, provType}) {
		t.Fatalf("after gc --delete-untagged oras discover lists %q, want both", got)
	}
	for _, r := range all {
		if _, err := remote.Get(d.ref(t, repo+"@"+r.Digest), d.remote()...); err != nil {
			t.Fatalf("after gc --delete-untagged the referrer %s does not pull: %v", r.Digest, err)
		}
	}
	withReferrers := d.storageUsed(t)
	if withReferrers-withSubject < int64(len(sbom)) {
		t.Fatalf("storage grew by %d bytes with the referrers, want at least the SBOM's %d", withReferrers-withSubject, len(sbom))
	}

	// The subject goes: its referrers are garbage, and the storage they
	// held (and the subject's) comes back.
	if r := c.image(d.info.Password, "rm", "--image", repo+":1", "--root", c.root, "--yes", "-u", "admin", "--password-stdin"); r.code != 0 {
		t.Fatalf("rm: %s", r)
	}
	d.gc(t, "--delete-untagged", "--grace", "0s")
	for _, r := range all {
		if _, err := remote.Get(d.ref(t, repo+"@"+r.Digest), d.remote()...); !isStatus(err, http.StatusNotFound) {
			t.Fatalf("after rm of the subject and gc the referrer %s is still served (%v), want 404", r.Digest, err)
		}
	}
	gone, _ := d.referrers(t, repo, subject, "")
	if len(gone) != 0 {
		t.Fatalf("after rm of the subject and gc the referrers API lists %d referrers, want none", len(gone))
	}
	left := d.storageUsed(t)
	t.Logf("storageUsedBytes: %d with the subject, %d with its two referrers, %d after rm of the subject and gc", withSubject, withReferrers, left)
	if left > withSubject-pullSize(t, subjectImg)+4096 {
		t.Fatalf("storage after rm and gc is %d bytes; it was %d with the subject alone (%d of it the subject) and %d with the referrers: their storage did not come back", left, withSubject, pullSize(t, subjectImg), withReferrers)
	}
}

// cosign signs an image on the device with a local key and no
// transparency log, and verifies it, once through the referrers API
// (the signature is listed there and no sha256-<hex>.sig tag exists) and
// once with the tag schema (the tag exists). It trusts the device CA
// through SSL_CERT_FILE, and its TUF and Rekor lookups are off.
func TestCosignSignVerifyReferrersAndTagModes(t *testing.T) {
	cosign := testenv.NeedTool(t, "EDGECR_COSIGN", "cosign", testenv.CosignVersion, "the cosign referrers test drives it")
	d := startDevice(t, "")
	work := t.TempDir()
	// cosign reads the registry credential from the Docker config.
	dockerDir := filepath.Join(work, "docker")
	os.MkdirAll(dockerDir, 0o700)
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{d.addr: map[string]string{
		"username": d.info.Username, "password": d.info.Password}}})
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"COSIGN_PASSWORD=e2e-key-password",
		"DOCKER_CONFIG=" + dockerDir,
		"SSL_CERT_FILE=" + d.info.CAFile,
		// Nothing off this machine: no TUF root fetch, no cache outside
		// the test's dir (noEgress below checks).
		"TUF_ROOT=" + filepath.Join(work, "tuf"),
		"SIGSTORE_NO_CACHE=true",
	}
	env = append(env, noEgress(t)...)
	// Without a trusted root, cosign verify fetches Sigstore's from its
	// TUF repository even when it verifies with a key and no transparency
	// log (it only warns when that fails). An empty one, trusting no
	// public log or CA, keeps it on this machine; the key is the trust.
	const trustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`
	if err := os.WriteFile(filepath.Join(work, "trusted_root.json"), []byte(trustedRoot), 0o644); err != nil {
		t.Fatal(err)
	}
	tool(t, work, env, cosign, "generate-key-pair")
	for _, f := range []string{"cosign.key", "cosign.pub"} {
		if _, err := os.Stat(filepath.Join(work, f)); err != nil {
			t.Fatalf("cosign generate-key-pair wrote no %s: %v", f, err)
		}
	}

	t.Run("referrers", func(t *testing.T) {
		const repo = "cosign/referrers"
		img, err := random.Image(4096, 1)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		dig := push(t, d.ref(t, repo+":1"), img, d.remote())
		ref := d.addr + "/" + repo + "@" + dig.String()
		oci11 := append([]string{"COSIGN_EXPERIMENTAL=1"}, env...)
		tool(t, work, oci11, cosign, "sign", "--yes", "--key", "cosign.key", "--tlog-upload=false",
			"--registry-referrers-mode=oci-1-1", ref)
		tool(t, work, oci11, cosign, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--trusted-root", "trusted_root.json",
			"--experimental-oci11", ref)
		descs, _ := d.referrers(t, repo, dig, "")
		if len(descs) != 1 || descs[0].ArtifactType != "application/vnd.dev.cosign.artifact.sig.v1+json" {
			t.Fatalf("the referrers API lists %+v, want the one cosign signature", descs)
		}
		if tags := d.tags(t, repo); slices.Contains(tags, fallbackTag(dig)+".sig") || len(tags) != 1 {
			t.Fatalf("tags of %s are %q, want only 1: cosign fell back to the tag schema", repo, tags)
		}
	})

	t.Run("tag", func(t *testing.T) {
		const repo = "cosign/tag"
		img, err := random.Image(4096, 1)
		if err != nil {
			t.Fatal(err)
		}
		dig := push(t, d.ref(t, repo+":1"), img, d.remote())
		ref := d.addr + "/" + repo + "@" + dig.String()
		tool(t, work, env, cosign, "sign", "--yes", "--key", "cosign.key", "--tlog-upload=false", ref)
		tool(t, work, env, cosign, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--trusted-root", "trusted_root.json", ref)
		if tags := d.tags(t, repo); !slices.Contains(tags, fallbackTag(dig)+".sig") {
			t.Fatalf("tags of %s are %q, want %s.sig", repo, tags, fallbackTag(dig))
		}
		// Verify checks the signature, not only that the tag exists: a
		// different key fails.
		other := filepath.Join(work, "other")
		os.MkdirAll(other, 0o700)
		tool(t, other, env, cosign, "generate-key-pair")
		cmd := exec.Command(cosign, "verify", "--key", filepath.Join(other, "cosign.pub"), "--insecure-ignore-tlog=true", "--trusted-root", "trusted_root.json", ref)
		cmd.Dir, cmd.Env = work, append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + work}, env...)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no matching signatures") {
			t.Fatalf("cosign verify with another key: %v, want it to find no matching signature:\n%s", err, out)
		}
	})
}
