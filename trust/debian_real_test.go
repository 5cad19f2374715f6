package trust_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"

	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
)

// liveCertsState records this machine's own /etc/ssl/certs (read only), to
// prove the real-tool tests never reach it.
func liveCertsState(t *testing.T) string {
	t.Helper()
	entries, err := os.ReadDir("/etc/ssl/certs")
	if err != nil {
		return "absent"
	}
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.Name())
		b.WriteByte('\n')
	}
	bundle, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	b.Write(bundle)
	return b.String()
}

// TestDebianStoreRealTool runs the real update-ca-certificates, relocated into
// a temp root: Install adds the anchor's symlink and puts the CA in the
// bundle; Uninstall (--fresh) leaves /etc/ssl/certs and ca-certificates.crt
// byte-identical to before, and the whole root too.
func TestDebianStoreRealTool(t *testing.T) {
	ctx := context.Background()
	testenv.LockMachine(t) // root e2e tests change the live trust store
	live := liveCertsState(t)
	root := realDebianRoot(t)
	ca := trusttest.NewCA(t, "device CA")
	s, err := trust.NewStore(trust.Debian, root, trust.ExecRunner{})
	if err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(root, "etc/ssl/certs")
	before, beforeCerts := trusttest.Snapshot(t, root), trusttest.Snapshot(t, certs)

	if changed, err := s.Install(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("Install = %v, %v", changed, err)
	}
	link, err := os.Readlink(filepath.Join(certs, "edgecr-dev1.pem"))
	if err != nil || link != filepath.Join(root, "usr/local/share/ca-certificates/edgecr-dev1.crt") {
		t.Errorf("symlink edgecr-dev1.pem -> %q, %v", link, err)
	}
	if bundle := readFile(t, filepath.Join(certs, "ca-certificates.crt")); !strings.Contains(bundle, string(bytes.TrimSpace(ca))) {
		t.Errorf("bundle does not hold the CA after Install")
	}
	if ok, err := s.Installed(ctx, "dev1", ca); err != nil || !ok {
		t.Errorf("Installed = %v, %v", ok, err)
	}
	if changed, err := s.Install(ctx, "dev1", ca); err != nil || changed {
		t.Errorf("second Install = %v, %v; want false", changed, err)
	}

	if changed, err := s.Uninstall(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("Uninstall = %v, %v", changed, err)
	}
	if diff := trusttest.DiffSnapshots(beforeCerts, trusttest.Snapshot(t, certs)); diff != "" {
		t.Errorf("etc/ssl/certs differs after Install+Uninstall:\n%s", diff)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("root differs after Install+Uninstall:\n%s", diff)
	}
	if liveCertsState(t) != live {
		t.Fatalf("this machine's /etc/ssl/certs changed during the test")
	}
}

// TestDebianRefreshWithoutFreshLeavesTraces pins down why Uninstall passes
// --fresh: after removing an anchor, a plain update-ca-certificates keeps
// its symlink (dangling) and hash link in /etc/ssl/certs.
func TestDebianRefreshWithoutFreshLeavesTraces(t *testing.T) {
	root := realDebianRoot(t)
	certs := filepath.Join(root, "etc/ssl/certs")
	before := trusttest.Snapshot(t, certs)
	anchor := filepath.Join(root, "usr/local/share/ca-certificates/edgecr-dev1.crt")
	writeFile(t, anchor, string(trusttest.NewCA(t, "device CA")))
	flags := relocationFlags(root)
	if out, err := exec.Command("update-ca-certificates", flags...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := os.Remove(anchor); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("update-ca-certificates", flags...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if trusttest.DiffSnapshots(before, trusttest.Snapshot(t, certs)) == "" {
		t.Skip("this update-ca-certificates cleans up without --fresh; nothing to pin down")
	}
	if _, err := os.Lstat(filepath.Join(certs, "edgecr-dev1.pem")); err != nil {
		t.Errorf("expected the dangling edgecr-dev1.pem link without --fresh: %v", err)
	}
	if out, err := exec.Command("update-ca-certificates", append(flags, "--fresh")...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, certs)); diff != "" {
		t.Errorf("--fresh did not restore etc/ssl/certs:\n%s", diff)
	}
}

// TestDebianRealToolUninstallLastCA: with no other CA configured (an empty
// ca-certificates.conf), update-ca-certificates --fresh has no bundle to
// write after the anchor goes and keeps the old one, which still holds the
// CA. Uninstall takes the CA out itself: the root ends as before Install
// (where the tool never wrote a bundle).
func TestDebianRealToolUninstallLastCA(t *testing.T) {
	ctx := context.Background()
	realDebianTool(t)
	root := t.TempDir()
	t.Setenv("TMPDIR", t.TempDir()) // the script's mktemp scratch files
	debianFixture(t, root)
	writeFile(t, filepath.Join(root, "etc/ca-certificates.conf"), "")
	if out, err := exec.Command("update-ca-certificates", append(relocationFlags(root), "--fresh")...).CombinedOutput(); err != nil {
		t.Fatalf("building fixture trust store: %v\n%s", err, out)
	}
	before := trusttest.Snapshot(t, root)
	s, err := trust.NewStore(trust.Debian, root, trust.ExecRunner{})
	if err != nil {
		t.Fatal(err)
	}
	ca := trusttest.NewCA(t, "device CA")
	bundle := filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")
	if changed, err := s.Install(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("Install = %v, %v", changed, err)
	}
	if !strings.Contains(readFile(t, bundle), string(bytes.TrimSpace(ca))) {
		t.Fatal("bundle does not hold the CA after Install")
	}
	if changed, err := s.Uninstall(ctx, "dev1", ca); err != nil || !changed {
		t.Fatalf("Uninstall = %v, %v", changed, err)
	}
	if b, err := os.ReadFile(bundle); err == nil && strings.Contains(string(b), string(bytes.TrimSpace(ca))) {
		t.Error("the bundle still holds the CA after Uninstall")
	}
	if ok, err := s.Installed(ctx, "dev1", ca); err != nil || ok {
		t.Errorf("Installed after Uninstall = %v, %v", ok, err)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("root differs after Install+Uninstall:\n%s", diff)
	}

	// With another local CA left, the tool rewrites the bundle itself and
	// Uninstall keeps that CA in it.
	other := trusttest.NewCA(t, "someone else's CA")
	writeFile(t, filepath.Join(root, "usr/local/share/ca-certificates/other.crt"), string(other))
	if _, err := s.Install(ctx, "dev1", ca); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Uninstall(ctx, "dev1", ca); err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, bundle); strings.Contains(b, string(bytes.TrimSpace(ca))) || !strings.Contains(b, string(bytes.TrimSpace(other))) {
		t.Errorf("bundle after Uninstall with another CA left:\n%s", b)
	}
}
