package trust_test

import (
	"context"
	"crypto/sha1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
)

func fileThumbprint(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading staged file: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return "", fmt.Errorf("staged file is not PEM")
	}
	return fmt.Sprintf("%X", sha1.Sum(block.Bytes)), nil
}

// keychainEmulator keeps the System keychain and its admin trust settings in
// memory and answers the security subcommands the store uses, with the
// messages macOS prints.
type keychainEmulator struct {
	mu      sync.Mutex
	certs   map[string]bool // thumbprint -> in System keychain
	trusted map[string]bool // thumbprint -> admin trust setting
	staged  []string
}

func newKeychainEmulator() *keychainEmulator {
	return &keychainEmulator{certs: map[string]bool{}, trusted: map[string]bool{}}
}

func (k *keychainEmulator) respond(name string, args []string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if name != "security" || len(args) == 0 {
		return nil, fmt.Errorf("emulator: unexpected %s %v", name, args)
	}
	line := strings.Join(args, " ")
	switch {
	case line == "find-certificate -a -Z /Library/Keychains/System.keychain":
		var b strings.Builder
		b.WriteString("SHA-256 hash: 0000\nSHA-1 hash: 1111111111111111111111111111111111111111\nkeychain: \"/Library/Keychains/System.keychain\"\n")
		for sha := range k.certs {
			fmt.Fprintf(&b, "SHA-256 hash: FFFF\nSHA-1 hash: %s\nkeychain: \"/Library/Keychains/System.keychain\"\n", sha)
		}
		return []byte(b.String()), nil
	case len(args) == 7 && strings.HasPrefix(line, "add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "):
		k.staged = append(k.staged, args[6])
		sha, err := fileThumbprint(args[6])
		if err != nil {
			return nil, err
		}
		k.certs[sha], k.trusted[sha] = true, true
		return nil, nil
	case len(args) == 3 && args[0] == "remove-trusted-cert" && args[1] == "-d":
		k.staged = append(k.staged, args[2])
		sha, err := fileThumbprint(args[2])
		if err != nil {
			return nil, err
		}
		if !k.trusted[sha] {
			out := []byte("SecTrustSettingsRemoveTrustSettings: The specified item could not be found in the keychain.\n")
			return out, errors.New("exit status 1")
		}
		delete(k.trusted, sha)
		return nil, nil
	case len(args) == 4 && args[0] == "delete-certificate" && args[1] == "-Z" && args[3] == trust.SystemKeychain:
		if !k.certs[args[2]] {
			return []byte("Unable to delete certificate matching \"" + args[2] + "\""), errors.New("exit status 1")
		}
		delete(k.certs, args[2])
		return nil, nil
	}
	return nil, fmt.Errorf("emulator: unexpected security %s", line)
}

// certutilEmulator keeps the LocalMachine Root store in memory and prints
// what certutil prints, including its CRYPT_E_NOT_FOUND failure.
type certutilEmulator struct {
	mu     sync.Mutex
	certs  map[string]bool
	staged []string
}

func (c *certutilEmulator) respond(name string, args []string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.certs == nil {
		c.certs = map[string]bool{}
	}
	if name != "certutil" {
		return nil, fmt.Errorf("emulator: unexpected %s", name)
	}
	notFound := func(cmd string) ([]byte, error) {
		return []byte("CertUtil: -" + cmd + " command FAILED: 0x80092004 (-2146885628 CRYPT_E_NOT_FOUND)\r\nCertUtil: Cannot find object or property.\r\n"), errors.New("exit status 0x80092004")
	}
	switch {
	case len(args) == 3 && args[0] == "-store" && args[1] == "Root":
		if !c.certs[args[2]] {
			return notFound("store")
		}
		spaced := strings.ToLower(args[2])
		return []byte("Root \"Trusted Root Certification Authorities\"\r\n================ Certificate 0 ================\r\nCert Hash(sha1): " + spaced + "\r\nCertUtil: -store command completed successfully.\r\n"), nil
	case len(args) == 4 && args[0] == "-addstore" && args[1] == "-f" && args[2] == "Root":
		c.staged = append(c.staged, args[3])
		sha, err := fileThumbprint(args[3])
		if err != nil {
			return nil, err
		}
		c.certs[sha] = true
		return []byte("CertUtil: -addstore command completed successfully.\r\n"), nil
	case len(args) == 3 && args[0] == "-delstore" && args[1] == "Root":
		if !c.certs[args[2]] {
			return notFound("delstore")
		}
		delete(c.certs, args[2])
		return []byte("CertUtil: -delstore command completed successfully.\r\n"), nil
	}
	return nil, fmt.Errorf("emulator: unexpected certutil %v", args)
}

func TestKeychainStoreCommands(t *testing.T) {
	ctx := context.Background()
	em := newKeychainEmulator()
	r := &trusttest.Runner{Respond: em.respond}
	staging := t.TempDir()
	s, err := trust.NewStore(trust.MacOS, "/", r, trust.WithTempDir(staging))
	if err != nil {
		t.Fatal(err)
	}
	ca := trusttest.NewCA(t, "device CA")
	sha := thumbprint(t, ca)
	if changed, err := s.Install(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("Install = %v, %v", changed, err)
	}
	if changed, err := s.Install(ctx, "dev1", ca); err != nil || changed {
		t.Fatalf("second Install = %v, %v", changed, err)
	}
	if changed, err := s.Uninstall(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("Uninstall = %v, %v", changed, err)
	}
	var got []string
	for _, c := range r.Calls() {
		got = append(got, strings.Join(c, " "))
	}
	want := []string{
		"security find-certificate -a -Z /Library/Keychains/System.keychain",
		"security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain " + em.staged[0],
		"security find-certificate -a -Z /Library/Keychains/System.keychain",
		"security find-certificate -a -Z /Library/Keychains/System.keychain",
		"security remove-trusted-cert -d " + em.staged[1],
		"security delete-certificate -Z " + sha + " /Library/Keychains/System.keychain",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(em.certs) != 0 || len(em.trusted) != 0 {
		t.Errorf("keychain left with certs %v, trust settings %v", em.certs, em.trusted)
	}
	if entries, _ := os.ReadDir(staging); len(entries) != 0 {
		t.Errorf("staged PEM files left behind: %v", entries)
	}
}

// A certificate in the keychain without a trust setting (added by hand) is
// still deleted: remove-trusted-cert's "could not be found" is not an error.
func TestKeychainStoreUninstallWithoutTrustSetting(t *testing.T) {
	em := newKeychainEmulator()
	ca := trusttest.NewCA(t, "device CA")
	em.certs[thumbprint(t, ca)] = true
	s, _ := trust.NewStore(trust.MacOS, "/", &trusttest.Runner{Respond: em.respond}, trust.WithTempDir(t.TempDir()))
	if changed, err := s.Uninstall(context.Background(), "dev1", ca); err != nil || !changed {
		t.Fatalf("Uninstall = %v, %v", changed, err)
	}
	if len(em.certs) != 0 {
		t.Errorf("certificate left in keychain")
	}
}

func TestCertutilStoreCommands(t *testing.T) {
	ctx := context.Background()
	em := &certutilEmulator{}
	r := &trusttest.Runner{Respond: em.respond}
	staging := t.TempDir()
	s, err := trust.NewStore(trust.Windows, "/", r, trust.WithTempDir(staging))
	if err != nil {
		t.Fatal(err)
	}
	ca := trusttest.NewCA(t, "device CA")
	sha := thumbprint(t, ca)
	if ok, err := s.Installed(ctx, "dev1", ca); err != nil || ok {
		t.Fatalf("Installed before Install = %v, %v; CRYPT_E_NOT_FOUND must mean false", ok, err)
	}
	if changed, err := s.Install(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("Install = %v, %v", changed, err)
	}
	if changed, err := s.Install(ctx, "dev1", ca); err != nil || changed {
		t.Fatalf("second Install = %v, %v", changed, err)
	}
	if changed, err := s.Uninstall(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("Uninstall = %v, %v", changed, err)
	}
	var got []string
	for _, c := range r.Calls() {
		got = append(got, strings.Join(c, " "))
	}
	want := []string{
		"certutil -store Root " + sha,
		"certutil -store Root " + sha,
		"certutil -addstore -f Root " + em.staged[0],
		"certutil -store Root " + sha,
		"certutil -store Root " + sha,
		"certutil -delstore Root " + sha,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if entries, _ := os.ReadDir(staging); len(entries) != 0 {
		t.Errorf("staged PEM files left behind: %v", entries)
	}
}

// Any other certutil failure is an error, not "not installed".
func TestCertutilStoreQueryFailure(t *testing.T) {
	r := &trusttest.Runner{Respond: func(string, []string) ([]byte, error) {
		return []byte("CertUtil: -store command FAILED: 0x80070005 (WIN32: 5 ERROR_ACCESS_DENIED)"), errors.New("exit status 5")
	}}
	s, _ := trust.NewStore(trust.Windows, "/", r)
	if _, err := s.Installed(context.Background(), "dev1", trusttest.NewCA(t, "x")); err == nil {
		t.Fatal("Installed hid an access-denied failure")
	}
	r2 := &trusttest.Runner{Missing: []string{"security"}}
	s2, _ := trust.NewStore(trust.MacOS, "/", r2)
	if _, err := s2.Install(context.Background(), "dev1", trusttest.NewCA(t, "x")); !errors.Is(err, trust.ErrToolMissing) {
		t.Fatalf("Install without security: %v, want ErrToolMissing", err)
	}
}
