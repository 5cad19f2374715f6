package server

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"gopkg.in/yaml.v3"
)

// Acceptance 5: the Secret's .dockerconfigjson decodes; its credential
// pulls, cannot push, shows in the client list and stops working when
// revoked.
func TestKubeSecretPullOnlyAndRevocable(t *testing.T) {
	ts := startServer(t, nil)
	ts.push(t, "apps/web:1", dockerImage(t, 32<<10, 2))

	k, err := ts.state.CreateKubeSecret("production", DefaultKubeSecretName, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	y, err := k.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var secret struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Type       string `yaml:"type"`
		Metadata   struct {
			Name, Namespace string
		}
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(y, &secret); err != nil {
		t.Fatalf("secret YAML: %v\n%s", err, y)
	}
	if secret.APIVersion != "v1" || secret.Kind != "Secret" || secret.Type != "kubernetes.io/dockerconfigjson" ||
		secret.Metadata.Name != "ase-ecr-credentials" || secret.Metadata.Namespace != "production" {
		t.Fatalf("secret: %+v\n%s", secret, y)
	}
	raw, err := base64.StdEncoding.DecodeString(secret.Data[".dockerconfigjson"])
	if err != nil {
		t.Fatalf(".dockerconfigjson: %v", err)
	}
	var cfg DockerConfigJSON
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf(".dockerconfigjson: %v: %s", err, raw)
	}
	entry, ok := cfg.Auths["ecr.test.internal:31001"]
	if !ok || len(cfg.Auths) != 1 {
		t.Fatalf("auths: %s", raw)
	}
	userPass, _ := base64.StdEncoding.DecodeString(entry.Auth)
	if string(userPass) != entry.Username+":"+entry.Password || entry.Username != k.IdentityID || len(entry.Password) < 40 {
		t.Fatalf("auth entry inconsistent: %+v", entry)
	}

	as := func() []remote.Option {
		return []remote.Option{remote.WithAuth(&authn.Basic{Username: entry.Username, Password: entry.Password}), remote.WithTransport(ts.transport())}
	}
	ts.pullVerified(t, "apps/web:1", as()...)

	err = remote.Write(ts.ref("apps/web:2"), dockerImage(t, 1<<10, 1), as()...)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("push with the pull secret: %v, want 403 DENIED", err)
	}

	clients, err := ts.state.Clients()
	if err != nil {
		t.Fatal(err)
	}
	var found *ClientInfo
	for i, c := range clients {
		if c.ID == k.IdentityID {
			found = &clients[i]
		}
	}
	if found == nil || found.Kind != KindKube || found.Name != "kube:production/ase-ecr-credentials" || found.Role != RolePull {
		t.Fatalf("clients ls: %+v", clients)
	}

	// Revoked as `edgecrd clients revoke` does it, from another State.
	other, err := Load(ts.state.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.RevokeClient(k.IdentityID, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = remote.Image(ts.ref("apps/web:1"), as()...)
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("pull after revoke: %v, want 401", err)
	}
}

func TestKubeSecretNames(t *testing.T) {
	ts := startServer(t, nil)
	for _, c := range []struct{ ns, name, want string }{
		{"Apps", "x", "invalid namespace"},
		{"-apps", "x", "invalid namespace"},
		{"a.b", "x", "invalid namespace"}, // a label, not a subdomain
		{strings.Repeat("a", 64), "x", "invalid namespace"},
		{"", "x", "invalid namespace"},
		{"apps", "Pull_Secret", "invalid secret name"},
		{"apps", "x..y", "invalid secret name"},
		{"apps", strings.Repeat("a", 254), "invalid secret name"},
	} {
		if _, err := ts.state.CreateKubeSecret(c.ns, c.name, time.Now()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CreateKubeSecret(%q, %q): err = %v, want %q", c.ns, c.name, err, c.want)
		}
	}
	if _, err := ts.state.CreateKubeSecret("kube-system", "registry.example-1", time.Now()); err != nil {
		t.Errorf("valid names refused: %v", err)
	}
	recs, _ := ts.state.Identities().Read()
	if len(recs.Identities) != 2 { // admin and the one valid secret
		t.Fatalf("identities after bad names: %d", len(recs.Identities))
	}
}
