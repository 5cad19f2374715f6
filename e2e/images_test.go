package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// result is one run of the edgecr binary.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// image runs edgecr as this client with stdin, stdout and stderr apart.
func (c *client) image(stdin string, args ...string) result {
	c.t.Helper()
	cmd := exec.Command(bin.edgecr, args...)
	cmd.Env = c.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		c.t.Fatalf("running edgecr %v: %v", args, err)
	}
	return r
}

// join joins the client to each device with a push-role token.
func (c *client) join(devs ...*device) {
	c.t.Helper()
	for _, d := range devs {
		if out, err := c.edgecr("join", d.joinURL(), "--token", d.token(c.t, "--role", "push"), "--root", c.root); err != nil {
			c.t.Fatalf("join %s: %v\n%s", d.info.Endpoint, err, out)
		}
	}
}

// admin is go-containerregistry as the device's admin, over the client's
// trust and hosts file.
func (d *device) admin(c *client) []remote.Option {
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: d.info.Username, Password: d.info.Password}), remote.WithTransport(c.registryTransport())}
}

func push(t *testing.T, ref name.Reference, m remote.Taggable, opts []remote.Option) v1.Hash {
	t.Helper()
	if err := remote.Push(ref, m, opts...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := m.(interface{ Digest() (v1.Hash, error) }).Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// dockerImage is a Docker v2 schema 2 image.
func dockerImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := img.MediaType(); mt != types.DockerManifestSchema2 {
		t.Fatalf("random.Image is %s", mt)
	}
	return img
}

// ociImage is an OCI image for linux/arch.
func ociImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	l, err := random.Layer(4096, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// ociIndex is an OCI index of a linux/amd64 and a linux/arm64 image.
func ociIndex(t *testing.T) (idx v1.ImageIndex, amd64, arm64 v1.Image) {
	t.Helper()
	amd64, arm64 = ociImage(t, "amd64"), ociImage(t, "arm64")
	idx = mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	return idx, amd64, arm64
}

type lsTag struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
	MediaType  string `json:"mediaType"`
	Size       int64  `json:"size"`
	Platforms  []struct {
		Platform, Digest, MediaType string
		Size                        int64
	} `json:"platforms"`
}

func (c *client) lsTags(repo string) map[string]lsTag {
	c.t.Helper()
	r := c.image("", "ls", repo, "--root", c.root, "-o", "json")
	if r.code != 0 {
		c.t.Fatalf("ls %s: %s", repo, r)
	}
	var tags []lsTag
	if err := json.Unmarshal([]byte(r.stdout), &tags); err != nil {
		c.t.Fatalf("ls -o json: %v\n%s", err, r.stdout)
	}
	out := map[string]lsTag{}
	for _, tg := range tags {
		out[tg.Tag] = tg
	}
	return out
}

// pullSize is what ls reports for an image: manifest, config and layers.
func pullSize(t *testing.T, img v1.Image) int64 {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// rm by tag and by digest, on a Docker v2 image, an OCI image and an OCI
// index: ls shows the tags before and not after; the other tag on the
// digest goes too and rm says so; an image that shares nothing stays and
// pulls; a push client is refused with the admin hint, and without --yes
// and without a terminal rm refuses.
func TestImagesRmByTagAndDigest(t *testing.T) {
	d := startDevice(t, "")
	c := newClient(t)
	c.join(d)
	admin := d.admin(c)
	keep := d.registryRef(t, "keep/app:1")
	keepDigest := push(t, keep, dockerImage(t), admin)

	kinds := []struct {
		name  string
		make  func() remote.Taggable
		mtype types.MediaType
	}{
		{"docker", func() remote.Taggable { return dockerImage(t) }, types.DockerManifestSchema2},
		{"oci", func() remote.Taggable { return ociImage(t, "amd64") }, types.OCIManifestSchema1},
		{"index", func() remote.Taggable { idx, _, _ := ociIndex(t); return idx }, types.OCIImageIndex},
	}
	for _, k := range kinds {
		for _, by := range []string{"tag", "image", "digest"} {
			t.Run(k.name+" by "+by, func(t *testing.T) {
				repo := "rm/" + k.name + "-" + by
				m := k.make()
				dg := push(t, d.registryRef(t, repo+":1"), m, admin)
				push(t, d.registryRef(t, repo+":alias"), m, admin)
				other := push(t, d.registryRef(t, repo+":other"), dockerImage(t), admin)

				tags := c.lsTags(repo)
				if len(tags) != 3 || tags["1"].Digest != dg.String() || tags["alias"].Digest != dg.String() || tags["1"].MediaType != string(k.mtype) {
					t.Fatalf("ls before rm: %+v", tags)
				}
				switch m := m.(type) {
				case v1.Image:
					if want := pullSize(t, m); tags["1"].Size != want {
						t.Errorf("ls size %d, want %d", tags["1"].Size, want)
					}
				case v1.ImageIndex:
					if len(tags["1"].Platforms) != 2 || tags["1"].Platforms[0].Platform != "linux/amd64" || tags["1"].Platforms[1].Platform != "linux/arm64" {
						t.Errorf("ls platforms: %+v", tags["1"].Platforms)
					}
				}

				// rm REPO:TAG deletes the tag alone, as the web UI does;
				// --image and REPO@DIGEST delete the image with every tag.
				args := []string{"rm", repo + ":1"}
				switch by {
				case "image":
					args = append(args, "--image")
				case "digest":
					args = []string{"rm", repo + "@" + dg.String()}
				}
				rm := func(stdin string, more ...string) result {
					return c.image(stdin, append(append(slices.Clone(args), "--root", c.root), more...)...)
				}
				// The push client may not delete: refused before rm says
				// what it would delete (with or without --yes), and the
				// hint says how.
				r := rm("")
				if r.code != 1 || !strings.Contains(r.stderr, "admin role") || strings.Contains(r.stdout+r.stderr, "Deleting "+d.info.Endpoint) || strings.Contains(r.stdout+r.stderr, "Deleting the tag") {
					t.Fatalf("rm without --yes as a push client: %s", r)
				}
				r = rm("", "--yes")
				if r.code != 1 || !strings.Contains(r.stderr, "denied") || !strings.Contains(r.stderr, "admin role") || !strings.Contains(r.stderr, "--username admin --password-stdin") || strings.Contains(r.stdout, "Deleting") {
					t.Fatalf("rm as a push client: %s", r)
				}
				if len(c.lsTags(repo)) != 3 {
					t.Fatal("a refused rm deleted something")
				}
				r = rm(d.info.Password+"\n", "--yes", "--username", "admin", "--password-stdin")
				if r.code != 0 {
					t.Fatalf("rm as admin: %s", r)
				}
				want := []string{"Deleting " + d.info.Endpoint + "/" + repo + "@" + dg.String(), "tags deleted with it: 1, alias", "Deleted ", "edgecrd gc --grace 0s"}
				if by == "tag" {
					want = []string{"Deleting the tag " + d.info.Endpoint + "/" + repo + ":1 (" + dg.String(), "the image stays: also tagged alias", "Deleted the tag ", "No space comes back: the image is still tagged alias"}
				}
				for _, w := range want {
					if !strings.Contains(r.stdout, w) {
						t.Errorf("rm output lacks %q:\n%s", w, r.stdout)
					}
				}
				if strings.Contains(r.stdout+r.stderr, d.info.Password) {
					t.Fatal("rm shows the admin password")
				}
				tags = c.lsTags(repo)
				_, err := remote.Head(d.registryRef(t, repo+"@"+dg.String()), admin...)
				if by == "tag" {
					if len(tags) != 2 || tags["alias"].Digest != dg.String() || tags["other"].Digest != other.String() {
						t.Fatalf("ls after rm of a tag: %+v", tags)
					}
					if err != nil {
						t.Fatalf("HEAD of the untagged image: %v, want it kept", err)
					}
					return
				}
				if len(tags) != 1 || tags["other"].Digest != other.String() {
					t.Fatalf("ls after rm: %+v", tags)
				}
				if !isStatus(err, 404) {
					t.Fatalf("HEAD of the deleted manifest: %v, want 404", err)
				}
				img, err := remote.Image(keep, admin...)
				if err != nil {
					t.Fatal(err)
				}
				if err := validate.Image(img); err != nil {
					t.Fatalf("the untouched image does not pull whole: %v", err)
				}
				if got, _ := img.Digest(); got != keepDigest {
					t.Fatalf("keep/app:1 is %s, want %s", got, keepDigest)
				}
			})
		}
	}

	t.Run("json and a platform of a tagged index", func(t *testing.T) {
		idx, _, arm64 := ociIndex(t)
		push(t, d.registryRef(t, "rm/json:multi"), idx, admin)
		armDigest, _ := arm64.Digest()
		r := c.image(d.info.Password, "rm", "rm/json@"+armDigest.String(), "--root", c.root, "--yes", "-u", "admin", "--password-stdin", "-o", "json")
		var plan struct {
			Digest       string   `json:"digest"`
			Tags         []string `json:"tags"`
			ReferencedBy []string `json:"referencedBy"`
			Deleted      bool     `json:"deleted"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil || r.code != 0 {
			t.Fatalf("rm -o json: %v\n%s", err, r)
		}
		if !plan.Deleted || plan.Digest != armDigest.String() || len(plan.Tags) != 0 || !slices.Equal(plan.ReferencedBy, []string{"multi (linux/arm64)"}) {
			t.Errorf("plan: %+v", plan)
		}
		if !strings.Contains(r.stderr, "index multi (linux/arm64) lists it as a platform") {
			t.Errorf("no warning about the index:\n%s", r.stderr)
		}
	})
}

func isStatus(err error, code int) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == code
}

// ls of the repositories: refused to a push client with a hint, allowed
// to the admin; --username without --password-stdin is a usage error.
func TestImagesLsRepositories(t *testing.T) {
	d := startDevice(t, "")
	c := newClient(t)
	c.join(d)
	push(t, d.registryRef(t, "a/one:1"), dockerImage(t), d.admin(c))
	push(t, d.registryRef(t, "b/two:1"), dockerImage(t), d.admin(c))

	r := c.image("", "ls", "--root", c.root)
	if r.code != 1 || !strings.Contains(r.stderr, "admin role") || !strings.Contains(r.stderr, "edgecr ls REPO") {
		t.Fatalf("ls as a push client: %s", r)
	}
	r = c.image(d.info.Password+"\n", "ls", "--root", c.root, "--username", "admin", "--password-stdin")
	if r.code != 0 || r.stdout != "a/one\nb/two\n" {
		t.Fatalf("ls as admin: %s", r)
	}
	r = c.image(d.info.Password+"\n", "ls", d.info.Endpoint, "--root", c.root, "-u", "admin", "--password-stdin", "-o", "json")
	var repos []map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &repos); err != nil || r.code != 0 || len(repos) != 2 || repos[0]["repository"] != "a/one" {
		t.Fatalf("ls REGISTRY -o json as admin: %v %s", err, r)
	}
	r = c.image("", "ls", "--root", c.root, "--username", "admin")
	if r.code != 2 || !strings.Contains(r.stderr, "--password-stdin") {
		t.Fatalf("--username alone: %s", r)
	}
	r = c.image("", "ls", "a/one", "--root", c.root)
	if r.code != 0 || !strings.Contains(r.stdout, "TAG") || !strings.Contains(r.stdout, "Docker v2") {
		t.Fatalf("ls REPO text: %s", r)
	}
}

// Bad input: each is a clear error and exit 1.
func TestImagesBadInput(t *testing.T) {
	d := startDevice(t, "")
	d2 := startDevice(t, "", "--name", "e2b")
	c := newClient(t)
	c.join(d)
	push(t, d.registryRef(t, "app/x:1"), dockerImage(t), d.admin(c))
	fresh := newClient(t)
	both := newClient(t)
	both.join(d, d2)
	puller := newClient(t)
	if out, err := puller.edgecr("join", d.joinURL(), "--token", d.token(t, "--role", "pull"), "--root", puller.root); err != nil {
		t.Fatalf("join with the pull role: %v\n%s", err, out)
	}
	revoked := newClient(t)
	revoked.join(d)
	if _, e, err := edgecrd(t, "clients", "revoke", newestClient(t, d.dataDir), "--data-dir", d.dataDir); err != nil {
		t.Fatalf("revoke: %v %s", err, e)
	}

	// As the admin (rm checks the role first: a push client hears
	// "denied"), or with a wrong admin password.
	asAdmin := []string{"-u", "admin", "--password-stdin"}
	tests := []struct {
		name  string
		c     *client
		args  []string
		want  []string
		stdin string
	}{
		{"unknown repository", c, []string{"ls", "nope/nope"}, []string{"repository nope/nope: not found on " + d.info.Endpoint}, ""},
		{"unknown repository rm", c, append([]string{"rm", "nope/nope:1", "--yes"}, asAdmin...), []string{"not found"}, d.info.Password},
		{"rm as a push client", c, []string{"rm", "nope/nope:1", "--yes"}, []string{"denied to client c-", "admin role"}, ""},
		{"wrong admin password", c, append([]string{"ls", "app/x"}, asAdmin...), []string{"(401)", "password given for admin is wrong", "`edgecrd info` on the device"}, "wrong-password"},
		{"malformed reference", c, []string{"rm", "App/UPPER:1", "--yes"}, []string{`parsing reference "App/UPPER:1"`}, ""},
		{"malformed ls", c, []string{"ls", "app/x:1"}, []string{"a repository has no tag or digest"}, ""},
		{"rm without a tag", c, []string{"rm", "app/x", "--yes"}, []string{"neither tag nor digest"}, ""},
		{"missing tag", c, append([]string{"rm", "app/x:nope", "--yes"}, asAdmin...), []string{"tag nope: not found in " + d.info.Endpoint + "/app/x (its tags: 1)"}, d.info.Password},
		{"missing digest", c, append([]string{"rm", "app/x@sha256:" + strings.Repeat("0", 64), "--yes"}, asAdmin...), []string{"not found"}, d.info.Password},
		{"not joined", fresh, []string{"ls", "app/x"}, []string{"not joined to any device", "edgecr join"}, ""},
		{"not joined cp", fresh, []string{"cp", "app/x:1", "app/y:1"}, []string{"not joined"}, ""},
		{"several joined", both, []string{"ls", "app/x"}, []string{"several registries are joined", d.info.Endpoint, d2.info.Endpoint}, ""},
		{"several joined rm", both, []string{"rm", "app/x:1", "--yes"}, []string{"several registries are joined"}, ""},
		{"several joined ls", both, []string{"ls"}, []string{"several registries are joined"}, ""},
		{"cp missing source", c, []string{"cp", "app/x:nope", "app/y:1"}, []string{"reading " + d.info.Endpoint + "/app/x:nope: not found"}, ""},
		{"cp as a pull client", puller, []string{"cp", "app/x:1", "app/y:1"}, []string{"denied to client c-", "(role pull)", "requires the push role", "--role push"}, ""},
		{"revoked client", revoked, []string{"ls", "app/x"}, []string{"refuses the credential (401)", "edgecr status"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.c.image(tt.stdin, append(tt.args, "--root", tt.c.root)...)
			if r.code != 1 {
				t.Fatalf("want exit 1: %s", r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q: %s", w, r)
				}
			}
			if !strings.HasPrefix(r.stderr, "edgecr: ") || strings.Count(r.stderr, "\n") > 3 {
				t.Errorf("not one clear error: %q", r.stderr)
			}
			if tt.stdin != "" && (strings.Contains(r.stderr, "revoked") || strings.Contains(r.stderr, "edgecr status")) {
				t.Errorf("the hint points at revocation: %s", r)
			}
		})
	}
	// The full reference works when several are joined.
	if r := both.image("", "ls", d.info.Endpoint+"/app/x", "--root", both.root); r.code != 0 || !strings.Contains(r.stdout, "Docker v2") {
		t.Errorf("full reference with two joined: %s", r)
	}
}

type cpResult struct {
	Digest       string   `json:"digest"`
	MediaType    string   `json:"mediaType"`
	Platforms    []string `json:"platforms"`
	Manifests    int      `json:"manifests"`
	Blobs        int      `json:"blobs"`
	Copied       int      `json:"copied"`
	Skipped      int      `json:"skipped"`
	CopiedBytes  int64    `json:"copiedBytes"`
	SkippedBytes int64    `json:"skippedBytes"`
}

func (c *client) cp(args ...string) (cpResult, result) {
	c.t.Helper()
	r := c.image("", append([]string{"cp", "--root", c.root, "-o", "json"}, args...)...)
	var res cpResult
	if r.code == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			c.t.Fatalf("cp -o json: %v\n%s", err, r)
		}
	}
	return res, r
}

// cp of a two-platform index between two edgecrd instances keeps the
// index digest and pulls whole; a second cp skips every blob; --platform
// copies just that manifest.
func TestCpIndexBetweenDevices(t *testing.T) {
	d1 := startDevice(t, "")
	d2 := startDevice(t, "", "--name", "e2b")
	c := newClient(t)
	c.join(d1, d2)
	idx, _, arm64 := ociIndex(t)
	want := push(t, d1.registryRef(t, "src/app:multi"), idx, d1.admin(c))
	src := d1.info.Endpoint + "/src/app:multi"

	res, r := c.cp(src, d2.info.Endpoint+"/mirror/app:multi")
	if r.code != 0 {
		t.Fatalf("cp: %s", r)
	}
	if res.Digest != want.String() || res.MediaType != string(types.OCIImageIndex) || res.Manifests != 3 || res.Blobs != 4 || res.Copied != 4 || res.Skipped != 0 ||
		!slices.Equal(res.Platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("first cp: %+v", res)
	}
	if strings.Contains(r.stderr, "\r") {
		t.Errorf("a progress bar without a terminal:\n%q", r.stderr)
	}
	got, err := remote.Index(d2.registryRef(t, "mirror/app:multi"), d2.admin(c)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(got); err != nil {
		t.Fatalf("the copy does not pull whole: %v", err)
	}
	if dg, _ := got.Digest(); dg != want {
		t.Fatalf("the copy's digest is %s, want %s", dg, want)
	}

	res, r = c.cp(src, d2.info.Endpoint+"/mirror/app:multi")
	if r.code != 0 || res.Digest != want.String() || res.Blobs != 4 || res.Copied != 0 || res.Skipped != 4 {
		t.Errorf("second cp: %+v %s", res, r)
	}
	// Another tag in the same repository: the blobs are there too.
	res, r = c.cp(src, d2.info.Endpoint+"/mirror/app:again")
	if r.code != 0 || res.Copied != 0 || res.Skipped != 4 {
		t.Errorf("cp to another tag: %+v %s", res, r)
	}

	armDigest, _ := arm64.Digest()
	res, r = c.cp("--platform", "linux/arm64", src, d2.info.Endpoint+"/arm/app:1")
	if r.code != 0 || res.Digest != armDigest.String() || res.MediaType != string(types.OCIManifestSchema1) || res.Manifests != 1 || res.Blobs != 2 || res.Copied != 2 {
		t.Errorf("cp --platform linux/arm64: %+v %s", res, r)
	}
	desc, err := remote.Get(d2.registryRef(t, "arm/app:1"), d2.admin(c)...)
	if err != nil || desc.Digest != armDigest || desc.MediaType != types.OCIManifestSchema1 {
		t.Fatalf("arm/app:1 on the second device: %v %+v", err, desc)
	}

	_, r = c.cp("--platform", "linux/s390x", src, d2.info.Endpoint+"/arm/app:2")
	if r.code != 1 || !strings.Contains(r.stderr, "has no linux/s390x image") || !strings.Contains(r.stderr, "linux/amd64, linux/arm64") {
		t.Errorf("cp of a missing platform: %s", r)
	}
	_, r = c.cp("--platform", "linux", src, d2.info.Endpoint+"/arm/app:2")
	if r.code != 2 {
		t.Errorf("cp --platform linux: %s", r)
	}

	// Text output names what was copied and skipped.
	r = c.image("", "cp", "--root", c.root, src, d2.info.Endpoint+"/mirror/app:multi")
	if r.code != 0 || !strings.Contains(r.stdout, "4 already there (skipped)") || !strings.Contains(r.stdout, want.String()+" (OCI index: linux/amd64, linux/arm64)") {
		t.Errorf("cp text output: %s", r)
	}
}

// cp from a registry the client did not join (anonymous, plain HTTP on
// loopback, as go-containerregistry reaches 127.0.0.1) into the device by
// a short reference.
func TestCpFromUpstreamRegistry(t *testing.T) {
	up := httptest.NewServer(registry.New())
	t.Cleanup(up.Close)
	upstream := strings.TrimPrefix(up.URL, "http://")
	img := dockerImage(t)
	ref, _ := name.ParseReference(upstream + "/library/tool:2")
	want := push(t, ref, img, nil)

	d := startDevice(t, "")
	c := newClient(t)
	c.join(d)
	res, r := c.cp(upstream+"/library/tool:2", "tools/tool:2")
	if r.code != 0 || res.Digest != want.String() || res.Copied != 3 {
		t.Fatalf("cp from upstream: %+v %s", res, r)
	}
	if got := c.lsTags("tools/tool"); got["2"].Digest != want.String() {
		t.Fatalf("ls after cp: %+v", got)
	}
}

// The first acceptance test, end to end: rm by tag (the vendor's
// procedure, as the admin) and then `edgecrd gc` reclaims the unshared
// layer (and the config and manifest), not the layer another image shares;
// the other image still pulls, digest-verified.
func TestImagesRmThenGCReclaimsUnsharedLayers(t *testing.T) {
	d := startDevice(t, "")
	c := newClient(t)
	c.join(d)
	admin := d.admin(c)
	shared, err := random.Layer(256<<10, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	build := func() (v1.Image, v1.Layer) {
		own, err := random.Layer(512<<10, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(ociImage(t, "amd64"), shared, own)
		if err != nil {
			t.Fatal(err)
		}
		return img, own
	}
	gone, own := build()
	stays, _ := build()
	push(t, d.registryRef(t, "gc/gone:1"), gone, admin)
	staysDigest := push(t, d.registryRef(t, "gc/stays:1"), stays, admin)

	r := c.image(d.info.Password, "rm", "--image", "gc/gone:1", "--root", c.root, "--yes", "-u", "admin", "--password-stdin")
	if r.code != 0 {
		t.Fatalf("rm: %s", r)
	}
	// rm names the command that reclaims the space now; the default grace
	// would reclaim nothing of what was just pushed.
	const reclaim = "`edgecrd gc --grace 0s`"
	if !strings.Contains(r.stdout, reclaim) {
		t.Fatalf("rm does not say how to reclaim the space now:\n%s", r)
	}
	out, errOut, err := edgecrd(t, "gc", "--data-dir", d.dataDir, "-o", "json")
	if err != nil {
		t.Fatalf("edgecrd gc: %v\n%s", err, errOut)
	}
	var rep0 struct {
		ReclaimedBytes int64 `json:"reclaimedBytes"`
	}
	if err := json.Unmarshal([]byte(out), &rep0); err != nil || rep0.ReclaimedBytes != 0 {
		t.Fatalf("gc with the default grace right after the push reclaimed %d bytes (%v), want 0, as rm says", rep0.ReclaimedBytes, err)
	}
	out, errOut, err = edgecrd(t, "gc", "--data-dir", d.dataDir, "--grace", "0s", "-o", "json")
	if err != nil {
		t.Fatalf("edgecrd gc: %v\n%s", err, errOut)
	}
	var rep struct {
		ReclaimedBytes int64 `json:"reclaimedBytes"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("gc -o json: %v\n%s", err, out)
	}
	ownSize, _ := own.Size()
	sharedSize, _ := shared.Size()
	if rep.ReclaimedBytes < ownSize || rep.ReclaimedBytes >= ownSize+sharedSize {
		t.Errorf("gc reclaimed %d bytes; want the unshared layer (%d) and the small blobs, not the shared layer (%d)", rep.ReclaimedBytes, ownSize, sharedSize)
	}
	img, err := remote.Image(d.registryRef(t, "gc/stays:1"), admin...)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("the image sharing a layer does not pull whole after gc: %v", err)
	}
	if got, _ := img.Digest(); got != staysDigest {
		t.Fatalf("gc/stays:1 is %s, want %s", got, staysDigest)
	}
}
