package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultKubeSecretName is the Secret name `edgecrd kube-secret` uses
// unless told otherwise (the name the vendor's procedure uses).
const DefaultKubeSecretName = "ase-ecr-credentials"

// KindKube marks identities created for Kubernetes pull secrets.
const KindKube = "kube"

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// ValidateKubeNames checks a namespace (an RFC 1123 label, as Kubernetes
// requires) and a Secret name (an RFC 1123 subdomain).
func ValidateKubeNames(namespace, name string) error {
	if len(namespace) > 63 || !dns1123Label.MatchString(namespace) {
		return fmt.Errorf("invalid namespace %q: want a DNS-1123 label (lower-case letters, digits and inner '-', at most 63 characters)", namespace)
	}
	if len(name) > 253 || !dns1123Subdomain.MatchString(name) {
		return fmt.Errorf("invalid secret name %q: want a DNS-1123 subdomain (lower-case letters, digits, inner '-' and '.', at most 253 characters)", name)
	}
	return nil
}

// KubeSecret is a pull-only credential packaged as a Kubernetes image pull
// Secret.
type KubeSecret struct {
	IdentityID string // the user name, also the id `edgecrd clients revoke` takes
	Namespace  string
	Name       string
	Registry   string // host:port the credential is for
	Password   string
}

// DockerConfigAuth is one entry of a .dockerconfigjson.
type DockerConfigAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Auth     string `json:"auth"` // base64 of username:password
}

// DockerConfigJSON is the content of a kubernetes.io/dockerconfigjson Secret.
type DockerConfigJSON struct {
	Auths map[string]DockerConfigAuth `json:"auths"`
}

// DockerConfigJSON returns the Secret's .dockerconfigjson document.
func (k *KubeSecret) DockerConfigJSON() []byte {
	b, _ := json.Marshal(DockerConfigJSON{Auths: map[string]DockerConfigAuth{
		k.Registry: {
			Username: k.IdentityID,
			Password: k.Password,
			Auth:     base64.StdEncoding.EncodeToString([]byte(k.IdentityID + ":" + k.Password)),
		},
	}})
	return b
}

// YAML renders the Secret manifest for kubectl apply.
func (k *KubeSecret) YAML() ([]byte, error) {
	type meta struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	doc := struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   meta              `yaml:"metadata"`
		Type       string            `yaml:"type"`
		Data       map[string]string `yaml:"data"`
	}{
		APIVersion: "v1",
		Kind:       "Secret",
		Metadata: meta{
			Name: k.Name, Namespace: k.Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "edgecrd"},
			Annotations: map[string]string{
				"edgecr.io/identity": k.IdentityID,
				"edgecr.io/registry": k.Registry,
			},
		},
		Type: "kubernetes.io/dockerconfigjson",
		Data: map[string]string{".dockerconfigjson": base64.StdEncoding.EncodeToString(k.DockerConfigJSON())},
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encoding secret: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding secret: %w", err)
	}
	return buf.Bytes(), nil
}

// CreateKubeSecret adds a new pull-only identity named kube:<namespace>/<name>
// and returns it as a Secret. The secret exists only in the returned value;
// its identity shard keeps its hash, and `edgecrd clients revoke` ends it.
func (s *State) CreateKubeSecret(namespace, name string, now time.Time) (*KubeSecret, error) {
	if err := ValidateKubeNames(namespace, name); err != nil {
		return nil, err
	}
	id, err := randomHex(8)
	if err != nil {
		return nil, err
	}
	secret, err := NewSecret()
	if err != nil {
		return nil, err
	}
	k := &KubeSecret{IdentityID: "k-" + id, Namespace: namespace, Name: name, Registry: s.Device.Endpoint(), Password: secret}
	store := s.Identities()
	ctx, cancel := opCtx()
	defer cancel()
	if err := store.ensureLayout(ctx); err != nil {
		return nil, err
	}
	err = store.addIdentity(ctx, &Identity{
		ID: k.IdentityID, Name: "kube:" + namespace + "/" + name, Kind: KindKube, Role: RolePull,
		SecretHash: HashSecret(secret), Created: now.UTC(),
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}
