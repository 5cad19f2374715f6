package trust_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
	"github.com/google/go-cmp/cmp"
)

// debianRoot returns a Debian fixture root whose trust store has been built
// once (as on a real system), the fake tool, and the relocation flags.
func debianRoot(t *testing.T) (root string, r *trusttest.Runner, flags []string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the emulated update-ca-certificates keeps symbolic links, as the real one does")
	}
	root = t.TempDir()
	debianFixture(t, root, trusttest.NewCA(t, "distribution CA 1"), trusttest.NewCA(t, "distribution CA 2"))
	r = &trusttest.Runner{Respond: fakeUpdateCACertificates(root)}
	p := func(s string) string { return filepath.Join(root, s) }
	flags = []string{
		"--certsconf", p("etc/ca-certificates.conf"),
		"--certsdir", p("usr/share/ca-certificates"),
		"--localcertsdir", p("usr/local/share/ca-certificates"),
		"--etccertsdir", p("etc/ssl/certs"),
		"--hooksdir", p("etc/ca-certificates/update.d"),
	}
	if _, err := r.Run(context.Background(), "update-ca-certificates", append(flags, "--fresh")...); err != nil {
		t.Fatalf("building fixture trust store: %v", err)
	}
	r.Reset()
	return root, r, flags
}

func TestDebianStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	root, r, flags := debianRoot(t)
	ca := trusttest.NewCA(t, "device CA")
	s, err := trust.NewStore(trust.Debian, root, r)
	if err != nil {
		t.Fatal(err)
	}
	before := trusttest.Snapshot(t, root)

	changed, err := s.Install(ctx, "dev1", ca)
	if err != nil || !changed {
		t.Fatalf("Install = %v, %v; want true, nil", changed, err)
	}
	anchor := filepath.Join(root, "usr/local/share/ca-certificates/edgecr-dev1.crt")
	if got := readFile(t, anchor); got != string(ca) {
		t.Errorf("anchor content = %q, want the CA PEM", got)
	}
	if fi, err := os.Stat(anchor); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o644) {
		t.Errorf("anchor mode = %v, %v; want 0644", fi.Mode().Perm(), err)
	}
	if !strings.Contains(readFile(t, filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")), string(ca)) {
		t.Errorf("bundle does not hold the CA after Install")
	}
	want := [][]string{append([]string{"update-ca-certificates"}, flags...)}
	if diff := cmp.Diff(want, r.Calls()); diff != "" {
		t.Errorf("Install commands (-want +got):\n%s", diff)
	}

	r.Reset()
	if changed, err := s.Install(ctx, "dev1", ca); err != nil || changed {
		t.Fatalf("second Install = %v, %v; want false, nil", changed, err)
	}
	if calls := r.Calls(); len(calls) != 0 {
		t.Errorf("second Install ran %v, want nothing", calls)
	}
	if ok, err := s.Installed(ctx, "dev1", ca); err != nil || !ok {
		t.Errorf("Installed = %v, %v; want true", ok, err)
	}
	if calls := r.Calls(); len(calls) != 0 {
		t.Errorf("Installed ran %v, want nothing", calls)
	}
	if entries, _ := filepath.Glob(filepath.Join(root, "usr/local/share/ca-certificates/*")); len(entries) != 1 {
		t.Errorf("anchor directory holds %v, want one file", entries)
	}

	changed, err = s.Uninstall(ctx, "dev1", ca)
	if err != nil || !changed {
		t.Fatalf("Uninstall = %v, %v; want true, nil", changed, err)
	}
	want = [][]string{append(append([]string{"update-ca-certificates"}, flags...), "--fresh")}
	if diff := cmp.Diff(want, r.Calls()); diff != "" {
		t.Errorf("Uninstall commands (-want +got):\n%s", diff)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("root not restored after Install+Uninstall:\n%s", diff)
	}
	r.Reset()
	if changed, err := s.Uninstall(ctx, "dev1", ca); err != nil || changed {
		t.Errorf("second Uninstall = %v, %v; want false, nil", changed, err)
	}
	if calls := r.Calls(); len(calls) != 0 {
		t.Errorf("second Uninstall ran %v, want nothing", calls)
	}
}

// A refresh that failed earlier (anchor written, bundle not rebuilt) is
// repaired by the next Install, and an anchor removed without --fresh (its
// symlink left dangling) is cleaned up by Uninstall.
func TestDebianStoreRepairsHalfDoneStates(t *testing.T) {
	ctx := context.Background()
	root, r, flags := debianRoot(t)
	ca := trusttest.NewCA(t, "device CA")
	s, _ := trust.NewStore(trust.Debian, root, r)
	before := trusttest.Snapshot(t, root)

	writeFile(t, filepath.Join(root, "usr/local/share/ca-certificates/edgecr-dev1.crt"), string(ca))
	if ok, _ := s.Installed(ctx, "dev1", ca); ok {
		t.Fatalf("Installed = true with the anchor written but the bundle not rebuilt")
	}
	if changed, err := s.Install(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("Install = %v, %v; want true (refresh rerun)", changed, err)
	}
	if ok, _ := s.Installed(ctx, "dev1", ca); !ok {
		t.Fatalf("Installed = false after repair")
	}

	// Someone removes the anchor and refreshes without --fresh.
	if err := os.Remove(filepath.Join(root, "usr/local/share/ca-certificates/edgecr-dev1.crt")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(ctx, "update-ca-certificates", flags...); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/ssl/certs/edgecr-dev1.pem")); err != nil {
		t.Fatalf("fixture: want the dangling link a plain refresh leaves: %v", err)
	}
	r.Reset()
	if changed, err := s.Uninstall(ctx, "dev1", nil); err != nil || !changed {
		t.Fatalf("Uninstall = %v, %v; want true (traces cleaned)", changed, err)
	}
	if calls := r.Calls(); len(calls) != 1 || calls[0][len(calls[0])-1] != "--fresh" {
		t.Errorf("Uninstall ran %v, want one update-ca-certificates --fresh", calls)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("root not restored:\n%s", diff)
	}
}

func TestDebianStoreToolMissing(t *testing.T) {
	ctx := context.Background()
	root, _, _ := debianRoot(t)
	r := &trusttest.Runner{Missing: []string{"update-ca-certificates"}}
	s, _ := trust.NewStore(trust.Debian, root, r)
	before := trusttest.Snapshot(t, root)
	changed, err := s.Install(ctx, "dev1", trusttest.NewCA(t, "device CA"))
	if !errors.Is(err, trust.ErrToolMissing) || changed {
		t.Fatalf("Install = %v, %v; want false, ErrToolMissing", changed, err)
	}
	if !strings.Contains(err.Error(), "update-ca-certificates") {
		t.Errorf("error %q does not name the tool", err)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("failed Install left changes:\n%s", diff)
	}
}

func TestDebianStoreNoAnchorDir(t *testing.T) {
	root := t.TempDir()
	r := &trusttest.Runner{}
	s, _ := trust.NewStore(trust.Debian, root, r)
	_, err := s.Install(context.Background(), "dev1", trusttest.NewCA(t, "device CA"))
	if !errors.Is(err, trust.ErrNoTrustStore) {
		t.Fatalf("Install error = %v, want ErrNoTrustStore", err)
	}
	if len(r.Calls()) != 0 {
		t.Errorf("ran %v with no trust store", r.Calls())
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("Install created %v", entries)
	}
}

// Installing a renewed CA under the same name replaces the anchor.
func TestDebianStoreReplacesAnchor(t *testing.T) {
	ctx := context.Background()
	root, r, _ := debianRoot(t)
	s, _ := trust.NewStore(trust.Debian, root, r)
	old, renewed := trusttest.NewCA(t, "old"), trusttest.NewCA(t, "new")
	if _, err := s.Install(ctx, "dev1", old); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Install(ctx, "dev1", renewed); err != nil || !changed {
		t.Fatalf("Install of renewed CA = %v, %v", changed, err)
	}
	if ok, _ := s.Installed(ctx, "dev1", old); ok {
		t.Errorf("old CA still reported installed")
	}
	if ok, _ := s.Installed(ctx, "dev1", renewed); !ok {
		t.Errorf("renewed CA not reported installed")
	}
}

func TestDebianStoreRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	root, r, _ := debianRoot(t)
	s, _ := trust.NewStore(trust.Debian, root, r)
	before := trusttest.Snapshot(t, root)
	if _, err := s.Install(ctx, "../../etc/evil", trusttest.NewCA(t, "x")); !errors.Is(err, trust.ErrInvalidName) {
		t.Errorf("Install with path name: %v, want ErrInvalidName", err)
	}
	if _, err := s.Install(ctx, "dev1", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")); !errors.Is(err, trust.ErrInvalidCertificate) {
		t.Errorf("Install of bad PEM: %v, want ErrInvalidCertificate", err)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("rejected Install changed the root:\n%s", diff)
	}
	if len(r.Calls()) != 0 {
		t.Errorf("rejected Install ran %v", r.Calls())
	}
}
