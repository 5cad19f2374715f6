package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestMirrorListener: the mirror port serves anonymous pulls of the listed
// repositories (as Docker asks, and as containerd asks with ns=docker.io),
// answers the version check without a challenge, and refuses pushes, other
// repositories, other registries, the catalog and everything off /v2/; the
// registry port still wants a credential.
func TestMirrorListener(t *testing.T) {
	cfg := parseConfig(t, "mirror:\n  listen: 127.0.0.1:0\n  registries:\n    - name: docker.io\n      repositories: [\"library/*\"]\n")
	dev := startServer(t, func(o *Options) { o.Sync = cfg })
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	push := dev.remoteOpts("admin", dev.adminPW)
	for _, r := range []string{"library/alpine:latest", "team/app:latest"} {
		if err := remote.Write(dev.ref(r), img, push...); err != nil {
			t.Fatalf("pushing %s: %v", r, err)
		}
	}
	maddr := dev.srv.MirrorAddr().String()
	anon := []remote.Option{remote.WithTransport(dev.transport()), remote.WithAuth(authn.Anonymous)}
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(maddr + "/" + s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	got, err := remote.Image(ref("library/alpine:latest"), anon...)
	if err != nil {
		t.Fatalf("anonymous pull through the mirror port: %v", err)
	}
	if _, err := got.RawConfigFile(); err != nil {
		t.Fatalf("reading the config blob through the mirror port: %v", err)
	}
	// Docker's credentials for docker.io, sent to the mirror, are ignored.
	if _, err := remote.Head(ref("library/alpine:latest"), remote.WithTransport(dev.transport()),
		remote.WithAuth(&authn.Basic{Username: "hubuser", Password: "hubpassword"})); err != nil {
		t.Errorf("pull with another registry's credentials: %v", err)
	}
	if strings.Contains(dev.logs.String(), "hubpassword") || strings.Contains(dev.logs.String(), "hubuser") {
		t.Error("the log holds the credentials a client sent the mirror")
	}
	if err := remote.Write(ref("library/alpine:pushed"), img, anon...); err == nil {
		t.Error("a push through the mirror port succeeded")
	}
	if _, err := remote.Image(ref("team/app:latest"), anon...); err == nil || !strings.Contains(err.Error(), "does not mirror docker.io/team/app") {
		t.Errorf("pull of an unlisted repository: %v, want a refusal naming it", err)
	}
	c := &http.Client{Transport: dev.transport()}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/v2/", http.StatusOK},
		{"/v2/library/alpine/manifests/latest?ns=docker.io", http.StatusOK},
		{"/v2/library/alpine/manifests/latest?ns=quay.io", http.StatusForbidden},
		{"/v2/library/alpine/tags/list", http.StatusOK},
		{"/v2/_catalog", http.StatusForbidden},
		{"/edgecr/v1/ca", http.StatusNotFound},
		{"/metrics", http.StatusNotFound},
	} {
		resp, err := c.Get("https://" + maddr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s on the mirror port: %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
		if h := resp.Header.Get("WWW-Authenticate"); h != "" {
			t.Errorf("GET %s on the mirror port challenged (%s)", tc.path, h)
		}
	}
	// The registry port is unchanged.
	if resp := dev.do(http.MethodGet, "/v2/library/alpine/manifests/latest", "", "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous pull on the registry port: %d, want 401", resp.StatusCode)
	}
	if !strings.Contains(dev.logs.String(), `"user":"mirror"`) {
		t.Errorf("the access log names no mirror request:\n%s", dev.logs.String())
	}
}
