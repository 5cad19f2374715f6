package trust_test

import (
	"context"
	"crypto/sha1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
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
// memory and answers the security and launchctl subcommands the store uses
// with what macOS prints. Sources of each output:
//   - find-certificate -a -Z: "SHA-256 hash:", "SHA-1 hash:", "keychain:"
//     lines per certificate (security(1), find-certificate -Z).
//   - verify-cert: "...certificate verification successful." (exit 0), and
//     for a certificate no trust setting anchors "Cert Verify Result:
//     CSSMERR_TP_NOT_TRUSTED" (exit 1) (security(1), verify-cert; the same two
//     lines are quoted verbatim by other projects' macOS trust tests and
//     notes, found by searching public code for them).
//   - add-trusted-cert -d without a desktop session: "SecTrustSettings-
//     SetTrustSettings: The authorization was denied since no user
//     interaction was possible." (mkcert#415, actions/runner-images#4519);
//     a cancelled dialog: "... The authorization was canceled by the user."
//     (errAuthorizationCanceled, Authorization.h). In both the certificate
//     is already imported into the keychain, without a trust setting.
//   - remove-trusted-cert -d with no trust setting: "SecTrustSettings-
//     RemoveTrustSettings: No Trust Settings were found."
//     (actions/runner-images#4734).
//   - launchctl managername: "Aqua" in a desktop session, "Background" over
//     SSH, "System" for a launchd daemon (launchctl(1), managername).
type keychainEmulator struct {
	mu      sync.Mutex
	certs   map[string]bool // thumbprint -> in System keychain
	trusted map[string]bool // thumbprint -> admin trust setting
	staged  []string
	// session is what launchctl managername prints ("" means Aqua); the
	// dialog of add-trusted-cert appears only in Aqua.
	session string
	// cancel makes the user cancel the next dialog.
	cancel bool
}

func newKeychainEmulator() *keychainEmulator {
	return &keychainEmulator{certs: map[string]bool{}, trusted: map[string]bool{}}
}

func (k *keychainEmulator) respond(name string, args []string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	line := strings.Join(args, " ")
	if name == "launchctl" && line == "managername" {
		if k.session == "" {
			return []byte("Aqua\n"), nil
		}
		return []byte(k.session + "\n"), nil
	}
	if name != "security" || len(args) == 0 {
		return nil, fmt.Errorf("emulator: unexpected %s %v", name, args)
	}
	switch {
	case line == "find-certificate -a -Z /Library/Keychains/System.keychain":
		var b strings.Builder
		b.WriteString("SHA-256 hash: 0000\nSHA-1 hash: 1111111111111111111111111111111111111111\nkeychain: \"/Library/Keychains/System.keychain\"\n")
		for sha := range k.certs {
			fmt.Fprintf(&b, "SHA-256 hash: FFFF\nSHA-1 hash: %s\nkeychain: \"/Library/Keychains/System.keychain\"\n", sha)
		}
		return []byte(b.String()), nil
	case len(args) == 7 && args[0] == "verify-cert" && args[1] == "-c" && strings.Join(args[3:], " ") == "-p basic -l -L":
		k.staged = append(k.staged, args[2])
		sha, err := fileThumbprint(args[2])
		if err != nil {
			return nil, err
		}
		if !k.trusted[sha] {
			return []byte("Cert Verify Result: CSSMERR_TP_NOT_TRUSTED\n"), errors.New("exit status 1")
		}
		return []byte("...certificate verification successful.\n"), nil
	case len(args) == 7 && strings.HasPrefix(line, "add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "):
		k.staged = append(k.staged, args[6])
		sha, err := fileThumbprint(args[6])
		if err != nil {
			return nil, err
		}
		k.certs[sha] = true
		// Failures as trust.ExecRunner returns them: the exit status and
		// the output.
		fail := func(msg string) ([]byte, error) { return []byte(msg + "\n"), errors.New("exit status 1: " + msg) }
		if k.session != "" && k.session != "Aqua" {
			return fail("SecTrustSettingsSetTrustSettings: The authorization was denied since no user interaction was possible.")
		}
		if k.cancel {
			k.cancel = false
			return fail("SecTrustSettingsSetTrustSettings: The authorization was canceled by the user.")
		}
		k.trusted[sha] = true
		return nil, nil
	case len(args) == 3 && args[0] == "remove-trusted-cert" && args[1] == "-d":
		k.staged = append(k.staged, args[2])
		sha, err := fileThumbprint(args[2])
		if err != nil {
			return nil, err
		}
		if !k.trusted[sha] {
			out := []byte("SecTrustSettingsRemoveTrustSettings: No Trust Settings were found.\n")
			return out, errors.New("exit status 1")
		}
		if k.session != "" && k.session != "Aqua" {
			msg := "SecTrustSettingsRemoveTrustSettings: The authorization was denied since no user interaction was possible."
			return []byte(msg + "\n"), errors.New("exit status 1: " + msg)
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

// crypt32Emulator is the LocalMachine ROOT store in memory, failing as
// crypt32 does: CertFindCertificateInStore sets CRYPT_E_NOT_FOUND
// (0x80092004) when no certificate has the hash (learn.microsoft.com,
// CertFindCertificateInStore, Return value); notFound replaces that code
// (certutil reports NTE_NOT_FOUND, 0x80090011, for the same case); err, when
// set, is what every call fails with (ERROR_ACCESS_DENIED for a write
// without elevation, as CertOpenStore returns it).
type crypt32Emulator struct {
	mu       sync.Mutex
	certs    map[[20]byte][]byte
	notFound syscall.Errno
	err      error
}

func newCrypt32Emulator() *crypt32Emulator {
	return &crypt32Emulator{certs: map[[20]byte][]byte{}, notFound: 0x80092004}
}

func (c *crypt32Emulator) Find(h [20]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if _, ok := c.certs[h]; !ok {
		return c.notFound
	}
	return nil
}

func (c *crypt32Emulator) Add(der []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.certs[sha1.Sum(der)] = der
	return nil
}

func (c *crypt32Emulator) Delete(h [20]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if _, ok := c.certs[h]; !ok {
		return c.notFound
	}
	delete(c.certs, h)
	return nil
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
		"security verify-cert -c " + em.staged[1] + " -p basic -l -L",
		"security find-certificate -a -Z /Library/Keychains/System.keychain",
		"security remove-trusted-cert -d " + em.staged[2],
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
// still deleted: remove-trusted-cert's "No Trust Settings were found" is not
// an error.
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

// Issue 17, defect 4: a copy in the System keychain without a trust setting
// (a plain import, or what a cancelled or impossible dialog leaves) is not
// installed, and Install trusts it.
func TestKeychainUntrustedCopyIsNotInstalled(t *testing.T) {
	ctx := context.Background()
	em := newKeychainEmulator()
	ca := trusttest.NewCA(t, "device CA")
	sha := thumbprint(t, ca)
	em.certs[sha] = true
	s, _ := trust.NewStore(trust.MacOS, "/", &trusttest.Runner{Respond: em.respond}, trust.WithTempDir(t.TempDir()))
	if ok, err := s.Installed(ctx, "dev1", ca); err != nil || ok {
		t.Fatalf("Installed = %v, %v; want false for an untrusted copy", ok, err)
	}
	if changed, err := s.Install(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("Install = %v, %v; want it to trust the copy", changed, err)
	}
	if !em.trusted[sha] {
		t.Fatal("Install left the copy untrusted")
	}
	if ok, err := s.Installed(ctx, "dev1", ca); err != nil || !ok {
		t.Fatalf("Installed after Install = %v, %v", ok, err)
	}
}

// A cancelled dialog fails the install and leaves an untrusted copy; the
// next join trusts it instead of finding it "present".
func TestKeychainCancelledDialogThenRetry(t *testing.T) {
	ctx := context.Background()
	em := newKeychainEmulator()
	em.cancel = true
	ca := trusttest.NewCA(t, "device CA")
	s, _ := trust.NewStore(trust.MacOS, "/", &trusttest.Runner{Respond: em.respond}, trust.WithTempDir(t.TempDir()))
	if _, err := s.Install(ctx, "dev1", ca); err == nil || !strings.Contains(err.Error(), "canceled by the user") {
		t.Fatalf("Install with a cancelled dialog = %v", err)
	}
	if ok, _ := s.Installed(ctx, "dev1", ca); ok {
		t.Fatal("an untrusted copy counts as installed")
	}
	if changed, err := s.Install(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("retry = %v, %v", changed, err)
	}
	if !em.trusted[thumbprint(t, ca)] {
		t.Fatal("the retry did not trust the CA")
	}
}

// Issue 17, defect 3: without a desktop session the store says so before
// anything is spent, and an add-trusted-cert that fails for that reason is
// ErrNoDesktopSession.
func TestKeychainPreflight(t *testing.T) {
	for _, tc := range []struct {
		session string
		wantErr bool
	}{
		{"", false}, // Aqua
		{"Background", true},
		{"System", true},
	} {
		t.Run("session="+tc.session, func(t *testing.T) {
			em := newKeychainEmulator()
			em.session = tc.session
			s, _ := trust.NewStore(trust.MacOS, "/", &trusttest.Runner{Respond: em.respond}, trust.WithTempDir(t.TempDir()))
			p, ok := s.(trust.Preflighter)
			if !ok {
				t.Fatal("the macOS store is not a Preflighter")
			}
			note, err := p.Preflight(context.Background())
			if tc.wantErr {
				if !errors.Is(err, trust.ErrNoDesktopSession) || !strings.Contains(err.Error(), tc.session) {
					t.Fatalf("Preflight = %q, %v; want ErrNoDesktopSession naming %s", note, err, tc.session)
				}
				_, err := s.Install(context.Background(), "dev1", trusttest.NewCA(t, "x"))
				if !errors.Is(err, trust.ErrNoDesktopSession) {
					t.Fatalf("Install without a desktop session = %v, want ErrNoDesktopSession", err)
				}
				return
			}
			if err != nil || !strings.Contains(note, "dialog") {
				t.Fatalf("Preflight in Aqua = %q, %v; want a note about the dialog", note, err)
			}
		})
	}
	// Without launchctl the store cannot tell: Install tries.
	s, _ := trust.NewStore(trust.MacOS, "/", &trusttest.Runner{Missing: []string{"launchctl"}})
	if _, err := s.(trust.Preflighter).Preflight(context.Background()); err != nil {
		t.Fatalf("Preflight without launchctl = %v", err)
	}
}

// Issue 17, defect 1: the first join on Windows finds the CA absent, adds
// it, and leave removes it, whichever not-found code the store answers
// with; no command runs (crypt32, not certutil).
func TestWindowsStoreFirstInstall(t *testing.T) {
	for _, code := range []syscall.Errno{0x80092004, 0x80090011} {
		t.Run(fmt.Sprintf("notfound=%#x", uintptr(code)), func(t *testing.T) {
			ctx := context.Background()
			em := newCrypt32Emulator()
			em.notFound = code
			r := &trusttest.Runner{}
			s, err := trust.NewStore(trust.Windows, "/", r, trust.WithWindowsRoot(em))
			if err != nil {
				t.Fatal(err)
			}
			ca := trusttest.NewCA(t, "device CA")
			if ok, err := s.Installed(ctx, "dev1", ca); err != nil || ok {
				t.Fatalf("Installed before Install = %v, %v; not found must mean false", ok, err)
			}
			if changed, err := s.Install(ctx, "dev1", ca); err != nil || !changed {
				t.Fatalf("Install = %v, %v", changed, err)
			}
			block, _ := pem.Decode(ca)
			if _, ok := em.certs[sha1.Sum(block.Bytes)]; !ok {
				t.Fatal("the store does not hold the CA's DER after Install")
			}
			if changed, err := s.Install(ctx, "dev1", ca); err != nil || changed {
				t.Fatalf("second Install = %v, %v", changed, err)
			}
			if changed, err := s.Uninstall(ctx, "dev1", ca); err != nil || !changed {
				t.Fatalf("Uninstall = %v, %v", changed, err)
			}
			if changed, err := s.Uninstall(ctx, "dev1", ca); err != nil || changed {
				t.Fatalf("second Uninstall = %v, %v", changed, err)
			}
			if len(em.certs) != 0 || len(r.Calls()) != 0 {
				t.Errorf("store left with %d certificates; commands run: %v", len(em.certs), r.Calls())
			}
		})
	}
}

// Any other failure is an error, not "not installed".
func TestWindowsStoreFailures(t *testing.T) {
	em := newCrypt32Emulator()
	em.err = syscall.Errno(5) // ERROR_ACCESS_DENIED
	s, _ := trust.NewStore(trust.Windows, "/", &trusttest.Runner{}, trust.WithWindowsRoot(em))
	ca := trusttest.NewCA(t, "x")
	if _, err := s.Installed(context.Background(), "dev1", ca); err == nil {
		t.Fatal("Installed hid an access-denied failure")
	}
	if _, err := s.Install(context.Background(), "dev1", ca); !errors.Is(err, syscall.Errno(5)) {
		t.Fatalf("Install = %v, want the access-denied errno", err)
	}
	// Off Windows, the live store is crypt32's, which is not there.
	if runtime.GOOS != "windows" {
		live, _ := trust.NewStore(trust.Windows, "/", &trusttest.Runner{})
		if _, err := live.Installed(context.Background(), "dev1", ca); !errors.Is(err, trust.ErrUnsupported) {
			t.Fatalf("crypt32 off Windows = %v, want ErrUnsupported", err)
		}
	}
	r2 := &trusttest.Runner{Missing: []string{"security"}}
	s2, _ := trust.NewStore(trust.MacOS, "/", r2)
	if _, err := s2.Install(context.Background(), "dev1", trusttest.NewCA(t, "x")); !errors.Is(err, trust.ErrToolMissing) {
		t.Fatalf("Install without security: %v, want ErrToolMissing", err)
	}
}

// Leave over SSH cannot remove the admin trust setting either: the error
// says why and where to run it, and the certificate stays for the next try.
func TestKeychainUninstallWithoutDesktopSession(t *testing.T) {
	em := newKeychainEmulator()
	ca := trusttest.NewCA(t, "device CA")
	sha := thumbprint(t, ca)
	em.certs[sha], em.trusted[sha] = true, true
	em.session = "Background"
	s, _ := trust.NewStore(trust.MacOS, "/", &trusttest.Runner{Respond: em.respond}, trust.WithTempDir(t.TempDir()))
	_, err := s.Uninstall(context.Background(), "dev1", ca)
	if !errors.Is(err, trust.ErrNoDesktopSession) || !strings.Contains(err.Error(), "Terminal") {
		t.Fatalf("Uninstall over SSH = %v, want ErrNoDesktopSession saying where to run leave", err)
	}
	if !em.certs[sha] || !em.trusted[sha] {
		t.Error("a failed removal changed the keychain")
	}
}
