package trust_test

import (
	"crypto/sha1"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
	"github.com/google/go-cmp/cmp"
)

func thumbprint(t *testing.T, pemBytes []byte) string {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	return fmt.Sprintf("%X", sha1.Sum(block.Bytes))
}

func TestPlanStoreLiveRoot(t *testing.T) {
	ca := trusttest.NewCA(t, "plan CA")
	sha := thumbprint(t, ca)
	for _, tc := range []struct {
		kind trust.Kind
		want trust.StorePlan
	}{
		{trust.Debian, trust.StorePlan{
			Kind:      trust.Debian,
			File:      "/usr/local/share/ca-certificates/edgecr-dev1.crt",
			Bundle:    "/etc/ssl/certs/ca-certificates.crt",
			Install:   [][]string{{"update-ca-certificates"}},
			Uninstall: [][]string{{"update-ca-certificates", "--fresh"}},
		}},
		{trust.Alpine, trust.StorePlan{
			Kind:      trust.Alpine,
			File:      "/usr/local/share/ca-certificates/edgecr-dev1.crt",
			Bundle:    "/etc/ssl/certs/ca-certificates.crt",
			Install:   [][]string{{"update-ca-certificates"}},
			Uninstall: [][]string{{"update-ca-certificates", "--fresh"}},
		}},
		{trust.RHEL, trust.StorePlan{
			Kind:      trust.RHEL,
			File:      "/etc/pki/ca-trust/source/anchors/edgecr-dev1.crt",
			Bundle:    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
			Install:   [][]string{{"update-ca-trust", "extract"}},
			Uninstall: [][]string{{"update-ca-trust", "extract"}},
		}},
		{trust.Arch, trust.StorePlan{
			Kind:      trust.Arch,
			File:      "/etc/ca-certificates/trust-source/anchors/edgecr-dev1.crt",
			Bundle:    "/etc/ca-certificates/extracted/tls-ca-bundle.pem",
			Install:   [][]string{{"trust", "extract-compat"}},
			Uninstall: [][]string{{"trust", "extract-compat"}},
		}},
		{trust.MacOS, trust.StorePlan{
			Kind:    trust.MacOS,
			Install: [][]string{{"security", "add-trusted-cert", "-d", "-r", "trustRoot", "-k", "/Library/Keychains/System.keychain", trust.StagedPEM}},
			Uninstall: [][]string{
				{"security", "remove-trusted-cert", "-d", trust.StagedPEM},
				{"security", "delete-certificate", "-Z", sha, "/Library/Keychains/System.keychain"},
			},
			Check: [][]string{
				{"security", "find-certificate", "-a", "-Z", "/Library/Keychains/System.keychain"},
				{"security", "verify-cert", "-c", trust.StagedPEM, "-p", "basic", "-l", "-L"},
			},
		}},
		{trust.Windows, trust.StorePlan{
			Kind:    trust.Windows,
			Actions: []string{"add the CA (sha1 " + sha + ") to the LocalMachine Root store (crypt32)"},
		}},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			got, err := trust.PlanStore(tc.kind, "/", "dev1", ca)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("PlanStore (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanStoreRelocatedRoot(t *testing.T) {
	ca := trusttest.NewCA(t, "plan CA")
	root := t.TempDir()
	r := func(p string) string { return filepath.Join(root, p) }
	debianFlags := []string{
		"--certsconf", r("etc/ca-certificates.conf"),
		"--certsdir", r("usr/share/ca-certificates"),
		"--localcertsdir", r("usr/local/share/ca-certificates"),
		"--etccertsdir", r("etc/ssl/certs"),
		"--hooksdir", r("etc/ca-certificates/update.d"),
	}
	got, err := trust.PlanStore(trust.Debian, root, "dev1", ca)
	if err != nil {
		t.Fatal(err)
	}
	want := trust.StorePlan{
		Kind:      trust.Debian,
		File:      r("usr/local/share/ca-certificates/edgecr-dev1.crt"),
		Bundle:    r("etc/ssl/certs/ca-certificates.crt"),
		Install:   [][]string{append([]string{"update-ca-certificates"}, debianFlags...)},
		Uninstall: [][]string{append(append([]string{"update-ca-certificates"}, debianFlags...), "--fresh")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Debian PlanStore (-want +got):\n%s", diff)
	}

	// Tools without relocation flags are not run against another root:
	// Alpine's would ignore them and change the live /etc/ssl.
	for kind, file := range map[trust.Kind]string{
		trust.Alpine: "usr/local/share/ca-certificates/edgecr-dev1.crt",
		trust.RHEL:   "etc/pki/ca-trust/source/anchors/edgecr-dev1.crt",
		trust.Arch:   "etc/ca-certificates/trust-source/anchors/edgecr-dev1.crt",
	} {
		got, err := trust.PlanStore(kind, root, "dev1", ca)
		if err != nil {
			t.Fatal(err)
		}
		if got.File != r(file) || got.Install != nil || got.Uninstall != nil || got.Bundle != "" || len(got.Notes) != 1 {
			t.Errorf("%s PlanStore = %+v, want file %s, no commands, one note", kind, got, r(file))
		}
	}
	for _, kind := range []trust.Kind{trust.MacOS, trust.Windows} {
		if _, err := trust.PlanStore(kind, root, "dev1", ca); !errors.Is(err, trust.ErrUnsupported) {
			t.Errorf("%s PlanStore under %s: error %v, want ErrUnsupported", kind, root, err)
		}
	}
}

func TestPlanStoreRejectsBadInput(t *testing.T) {
	ca := trusttest.NewCA(t, "plan CA")
	for _, name := range []string{"", "../etc/passwd", "a/b", "has space", "reg:5000", "-flag"} {
		if _, err := trust.PlanStore(trust.Debian, "/", name, ca); !errors.Is(err, trust.ErrInvalidName) {
			t.Errorf("name %q: error %v, want ErrInvalidName", name, err)
		}
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})
	for name, in := range map[string][]byte{
		"empty":      nil,
		"garbage":    []byte("hello"),
		"key":        key,
		"two certs":  append(append([]byte{}, ca...), ca...),
		"bad der":    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}),
		"cert + key": append(append([]byte{}, ca...), key...),
	} {
		if _, err := trust.PlanStore(trust.Debian, "/", "dev1", in); !errors.Is(err, trust.ErrInvalidCertificate) {
			t.Errorf("%s: error %v, want ErrInvalidCertificate", name, err)
		}
	}
}
