//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// TestDockerJoinRealMachine is acceptance point 2 of the join issue: as
// root on this machine, with the device on a non-loopback address (Docker
// skips TLS verification for loopback registries), `edgecr join` alone makes
// `docker push/pull/run` work — no docker login, no daemon restart — and
// `edgecr leave` puts /etc/hosts, the trust bundle, the /etc/ssl/certs
// listing and config.json back byte for byte.
func TestDockerJoinRealMachine(t *testing.T) {
	testenv.NeedRoot(t, "edgecr join writes /etc/hosts, the system trust store and /etc/docker/certs.d")
	testenv.NeedCommand(t, "ip", "makes the network namespace the device runs in")
	uca := testenv.NeedCommand(t, "update-ca-certificates", "the system trust store is Debian's")
	tmp := newDockerCLI(t) // checks the daemon answers
	daemon := localDockerd(t)

	original := snapshotSystem(t) // cleanup puts the machine back to this
	// update-ca-certificates does not reproduce every byte a machine image
	// ships (here it turns a file into a link and rebuilds java/cacerts), so
	// the baseline for "leave restores" is the store as the tool leaves it.
	if out, err := exec.Command(uca, "--fresh").CombinedOutput(); err != nil {
		t.Fatalf("normalising the trust store: %v\n%s", err, out)
	}
	base := snapshotSystem(t)
	if d := original.Diff(); len(d) > 0 {
		t.Logf("update-ca-certificates --fresh changed on this machine (restored at the end):\n%s", indent(strings.Join(d, "\n")))
	}
	javaBefore := javaTrust(t)
	runtimeDirs := []string{"/etc/containerd", "/etc/containers", "/etc/rancher"}
	runtimesBefore := treeListing(t, runtimeDirs...)

	img := buildScratchImage(t, "edgecr-e2e/joined:"+randomHex(4))
	dev := netnsDevice(t, "")
	tokOut, e, err := edgecrd(t, "token", "create", "--data-dir", dev.dataDir, "-o", "json")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, e)
	}
	var tok struct{ Token, JoinCommand string }
	if err := jsonUnmarshal(tokOut, &tok); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.JoinCommand, sudoUnlessRoot+" edgecr join https://"+dev.IP+":") {
		t.Fatalf("join command %q does not point at the device's address %s", tok.JoinCommand, dev.IP)
	}

	credDir := t.TempDir()
	env := []string{
		"EDGECR_CONFIG_DIR=" + credDir,
		"PATH=" + filepath.Dir(bin.helper) + string(os.PathListSeparator) + os.Getenv("PATH"),
	}
	// The real docker config of the user running docker: no DOCKER_CONFIG.
	dk := &dockerCLI{t: t, ctx: tmp.ctx, Config: dockerConfigDir(), extra: env}
	edgecr := func(args ...string) (string, error) {
		cmd := exec.Command(bin.edgecr, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	leaveOnFailure := onUndo(t, "edgecr leave", func(logf func(string, ...any)) error {
		out, err := edgecr("leave")
		logf("edgecr leave (cleanup): %v\n%s", err, out)
		return nil
	})

	out, err := edgecr("join", "https://"+dev.IP+":31001", "--token", tok.Token, "--name", "e2e-root")
	if err != nil {
		t.Fatalf("edgecr join: %v\n%s", err, indent(out))
	}
	t.Logf("edgecr join:\n%s", indent(out))
	for _, want := range []string{"/etc/hosts", "update-ca-certificates", "docker: configured", "/v2/"} {
		if !strings.Contains(out, want) {
			t.Errorf("join output does not report %q", want)
		}
	}
	if out, err := edgecr("status"); err != nil {
		t.Fatalf("edgecr status after join: %v\n%s", err, indent(out))
	}

	ref := dev.info.Endpoint + "/e2e/joined:1"
	dk.Must("tag", img.Ref, ref)
	out = dk.Must("push", ref)
	if !strings.Contains(out, "digest: sha256:") {
		t.Fatalf("docker push:\n%s", indent(out))
	}
	dk.Must("rmi", ref)
	dk.Must("rmi", img.Ref)
	out = dk.Must("pull", ref)
	if !strings.Contains(out, "Downloaded newer image") {
		t.Fatalf("docker pull did not download:\n%s", indent(out))
	}
	out = dk.Must("run", "--rm", "--network", "none", ref)
	if !strings.Contains(out, img.Marker) {
		t.Fatalf("docker run printed %q, want %q", out, img.Marker)
	}
	dk.Run("", "rmi", ref)
	if now := localDockerd(t); now != daemon {
		t.Fatalf("the Docker daemon restarted: was %v, now %v", daemon, now)
	}
	cfg, _ := os.ReadFile(filepath.Join(dk.Config, "config.json"))
	if strings.Contains(string(cfg), `"auths"`) && strings.Contains(string(cfg), dev.info.Endpoint+`": {`) {
		t.Fatalf("a docker login entry appeared in config.json:\n%s", cfg)
	}

	out, err = edgecr("leave")
	if err != nil {
		t.Fatalf("edgecr leave: %v\n%s", err, indent(out))
	}
	leaveOnFailure.run(t.Logf) // done: nothing left to leave
	t.Logf("edgecr leave:\n%s", indent(out))

	// The Java keystore that ca-certificates-java rebuilds carries fresh
	// creation dates, so its bytes differ after any rebuild; what must be
	// identical is its entries: no edgecr CA left in it.
	javaAfter := javaTrust(t)
	if d := diffTrees(javaBefore, javaAfter); len(d) > 0 {
		t.Errorf("the Java keystore's entries differ after leave:\n%s", indent(strings.Join(d, "\n")))
	}
	var bad []string
	for _, d := range base.Diff() {
		if strings.HasPrefix(d, javaKeystore+": ") && strings.Contains(d, "content changed") && javaBefore != nil {
			t.Logf("Java keystore rebuilt, same %d entries: %s", len(javaAfter), d)
			continue
		}
		bad = append(bad, d)
	}
	if len(bad) > 0 {
		t.Errorf("join + leave left the system different:\n%s", indent(strings.Join(bad, "\n")))
	}
	if d := diffTrees(runtimesBefore, treeListing(t, runtimeDirs...)); len(d) > 0 {
		t.Errorf("join + leave left container runtime config behind:\n%s", indent(strings.Join(d, "\n")))
	}
	if b, _ := os.ReadFile(filepath.Join(credDir, "credentials.json")); strings.Contains(string(b), dev.info.Endpoint) {
		t.Errorf("the credential is still stored after leave")
	}
	cl, _, _ := edgecrd(t, "clients", "ls", "--data-dir", dev.dataDir, "-o", "json")
	if !strings.Contains(cl, `"revoked": true`) {
		t.Errorf("leave did not revoke the client on the device:\n%s", cl)
	}
}

func jsonUnmarshal(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("parsing %q: %w", s, err)
	}
	return nil
}

const javaKeystore = "/etc/ssl/certs/java/cacerts"

// javaTrust lists the Java keystore's entries as "alias sha256" (nil when
// there is no keystore or no keytool).
func javaTrust(t *testing.T) map[string]string {
	t.Helper()
	if _, err := os.Stat(javaKeystore); err != nil {
		return nil
	}
	kt, err := exec.LookPath("keytool")
	if err != nil {
		return nil
	}
	out, err := exec.Command(kt, "-list", "-keystore", javaKeystore, "-storepass", "changeit").CombinedOutput()
	if err != nil {
		t.Fatalf("keytool -list %s: %v\n%s", javaKeystore, err, out)
	}
	m := map[string]string{}
	var alias string
	for l := range strings.Lines(string(out)) {
		l = strings.TrimSpace(l)
		if strings.HasSuffix(l, "trustedCertEntry,") {
			alias, _, _ = strings.Cut(l, ", ")
		} else if fp, ok := strings.CutPrefix(l, "Certificate fingerprint (SHA-256): "); ok && alias != "" {
			m[alias+" "+fp] = fp
			alias = ""
		}
	}
	return m
}
