package agent

import (
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"github.com/docker/docker-credential-helpers/credentials"
)

// When the state is root's (join ran under sudo), the image commands know
// the joined registries from the user's credential store.
func TestCredentialDevices(t *testing.T) {
	home := t.TempDir()
	s := NewSystem(SystemConfig{GOOS: "linux", Root: t.TempDir(), User: User{Name: "u", Home: home, UID: -1, GID: -1},
		Getenv: func(k string) string { return map[string]string{"EDGECR_CONFIG_DIR": filepath.Join(home, "cred")}[k] }})
	for _, reg := range []string{"ecr.b.internal:31001", "ECR.A.internal:31001"} {
		if err := s.Credentials(s.CredentialsPath).Add(&credentials.Credentials{ServerURL: reg, Username: "c", Secret: "s"}); err != nil {
			t.Fatal(err)
		}
	}
	devs, err := s.credentialDevices(http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	im := &Images{sys: s, devices: devs}
	if got := im.Registries(); !slices.Equal(got, []string{"ecr.a.internal:31001", "ecr.b.internal:31001"}) {
		t.Fatalf("registries %v", got)
	}
	if u, p, ok := im.storedCredential(devs[0]); !ok || u != "c" || p.reveal() != "s" {
		t.Fatalf("stored credential: %q %v", u, ok)
	}
}
