package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/server"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"gopkg.in/yaml.v3"
)

// `edgecrd kube-secret` prints a Secret whose credential pulls from the
// running device, is listed by `clients ls` and ends with `clients revoke`.
func TestKubeSecretCommand(t *testing.T) {
	d := startDevice(t)
	img, err := random.Image(8<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(d.ref(t, "k8s/app:1"), img, d.opts...); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := edgecrd(t, "kube-secret", "--data-dir", d.dir, "--namespace", "shop")
	if code != 0 {
		t.Fatalf("kube-secret: %s", stderr)
	}
	var secret struct {
		Kind     string            `yaml:"kind"`
		Type     string            `yaml:"type"`
		Metadata map[string]any    `yaml:"metadata"`
		Data     map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal([]byte(out), &secret); err != nil || secret.Kind != "Secret" || secret.Type != "kubernetes.io/dockerconfigjson" ||
		secret.Metadata["name"] != "ase-ecr-credentials" || secret.Metadata["namespace"] != "shop" {
		t.Fatalf("secret (%v):\n%s", err, out)
	}
	raw, _ := base64.StdEncoding.DecodeString(secret.Data[".dockerconfigjson"])
	var cfg server.DockerConfigJSON
	if err := json.Unmarshal(raw, &cfg); err != nil || len(cfg.Auths) != 1 {
		t.Fatalf(".dockerconfigjson: %v: %s", err, raw)
	}
	var user, pass string
	for host, a := range cfg.Auths {
		if host != "ecr.cmdtest.internal:31001" {
			t.Errorf("secret is for %s", host)
		}
		user, pass = a.Username, a.Password
	}
	pull := func() error {
		_, err := remote.Image(d.ref(t, "k8s/app:1"), remote.WithAuth(&authn.Basic{Username: user, Password: pass}), d.opts[1])
		return err
	}
	if err := pull(); err != nil {
		t.Fatalf("pull with the secret: %v", err)
	}

	code, out, _ = edgecrd(t, "clients", "ls", "--data-dir", d.dir)
	if code != 0 || !strings.Contains(out, user) || !strings.Contains(out, "kube:shop/ase-ecr-credentials") {
		t.Fatalf("clients ls:\n%s", out)
	}
	if code, _, stderr := edgecrd(t, "clients", "revoke", user, "--data-dir", d.dir); code != 0 {
		t.Fatalf("revoke: %s", stderr)
	}
	var terr *transport.Error
	if err := pull(); !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("pull after revoke: %v, want 401", err)
	}
}
