package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/trust/trusttest"
)

func (e *env) joinMirror(token string, mirrors ...string) *agent.JoinResult {
	e.t.Helper()
	res, err := e.sys.Join(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: token, Name: "laptop", Report: e.report, Mirrors: mirrors})
	if err != nil {
		e.t.Fatalf("join --mirror: %v\noutput:\n%s", err, e.output())
	}
	return res
}

// TestJoinMirrorThenLeave: join --mirror docker.io --mirror quay.io writes
// Docker's registry-mirrors (into the daemon.json that was there, every
// key kept), containerd's hosts.toml per registry and podman's drop-ins;
// a second join changes nothing; status shows each entry in force; leave
// puts every byte and mode back.
func TestJoinMirrorThenLeave(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker", "etc/containerd", "etc/containers", "etc/rancher/k3s"}}})
	k3sOrig := "# the site's own\nmirrors:\n  docker.io:\n    endpoint:\n      - https://cache.lan\n"
	if err := os.WriteFile(filepath.Join(e.root, "etc/rancher/k3s/registries.yaml"), []byte(k3sOrig), 0o640); err != nil {
		t.Fatal(err)
	}
	daemon := filepath.Join(e.root, "etc/docker/daemon.json")
	orig := "{\"data-root\": \"/var/lib/docker\", \"mtu\": 1400}"
	if err := os.WriteFile(daemon, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(daemon, 0o600); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot()
	token := e.dev.Token(agenttest.TokenOptions{})
	e.joinMirror(token, "docker.io", "quay.io")

	url := "https://ecr.box.internal:31002"
	var d map[string]any
	if err := json.Unmarshal([]byte(e.read("etc/docker/daemon.json")), &d); err != nil {
		t.Fatal(err)
	}
	if m, _ := d["registry-mirrors"].([]any); len(m) != 1 || m[0] != url || d["mtu"] != 1400.0 || d["data-root"] != "/var/lib/docker" {
		t.Errorf("daemon.json after join: %v", d)
	}
	if fi, _ := os.Stat(daemon); fi.Mode().Perm() != 0o600 {
		t.Errorf("daemon.json mode %v, want 0600", fi.Mode().Perm())
	}
	for _, reg := range []string{"docker.io", "quay.io"} {
		h := e.read("etc/containerd/certs.d/" + reg + "/hosts.toml")
		if !strings.Contains(h, `[host."`+url+`"]`) || !strings.Contains(h, `capabilities = ["pull", "resolve"]`) ||
			!strings.Contains(h, `ca = "/etc/containerd/certs.d/`+reg+`/edgecr-mirror-ca.crt"`) {
			t.Errorf("%s hosts.toml:\n%s", reg, h)
		}
		p := e.read("etc/containers/registries.conf.d/50-edgecr-mirror-" + reg + ".conf")
		if !strings.Contains(p, `location = "ecr.box.internal:31002"`) || !strings.Contains(p, `prefix = "`+reg+`"`) {
			t.Errorf("%s podman drop-in:\n%s", reg, p)
		}
	}
	k3s := e.read("etc/rancher/k3s/registries.yaml")
	if !strings.Contains(k3s, "https://cache.lan") || strings.Count(k3s, url) != 2 || !strings.Contains(k3s, "ca_file: \"/etc/rancher/k3s/edgecr/mirror-ecr.box.internal_31002.crt\"") {
		t.Errorf("k3s registries.yaml after join:\n%s", k3s)
	}
	if got := e.read("etc/containerd/certs.d/docker.io/edgecr-mirror-ca.crt"); got != e.state().Registries[0].CAPEM {
		t.Error("containerd's mirror CA is not the device CA")
	}
	if !strings.Contains(e.output(), "Docker takes mirrors for docker.io only") {
		t.Errorf("no word that Docker does not mirror quay.io:\n%s", e.output())
	}

	// The bytes from before are not in the state file, which anyone may
	// read: registries.yaml may hold passwords.
	if st := e.read("var/lib/edgecr/state.json"); strings.Contains(st, "cache.lan") || strings.Contains(st, "data-root") {
		t.Error("the state file holds a runtime file's content from before join")
	}
	backups, _ := filepath.Glob(filepath.Join(e.root, "var/lib/edgecr/mirror-backups/*"))
	if len(backups) != 2 {
		t.Errorf("%d copies from before join, want 2 (daemon.json, registries.yaml)", len(backups))
	}
	for _, b := range backups {
		if fi, err := os.Stat(b); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("copy %s: %v, want mode 0600", b, err)
		}
	}

	afterJoin := e.snapshot()
	e.joinMirror(token, "docker.io", "quay.io")
	again := e.snapshot()
	delete(afterJoin, "var/lib/edgecr/state.json") // its updatedAt moves
	delete(again, "var/lib/edgecr/state.json")
	if diff := trusttest.DiffSnapshots(afterJoin, again); diff != "" {
		t.Errorf("second join --mirror changed:\n%s", diff)
	}

	sts, err := e.sys.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range sts[0].Checks {
		if strings.HasPrefix(c.Name, "mirror of ") {
			n++
			if !c.OK {
				t.Errorf("status: %+v", c)
			}
		}
	}
	if n != 6 { // docker daemon.json, 2 hosts.toml, 2 drop-ins, registries.yaml
		t.Errorf("status shows %d mirror entries, want 6: %+v", n, sts[0].Checks)
	}

	e.leave()
	e.requireSnapshot(before, "leave")
}

// TestLeaveMirrorKeepsUserChanges: a file the user changed after join
// keeps their change; only edgecr's mirror entry leaves it.
func TestLeaveMirrorKeepsUserChanges(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker", "etc/containerd"}}})
	e.joinMirror(e.dev.Token(agenttest.TokenOptions{}), "docker.io")
	daemon := filepath.Join(e.root, "etc/docker/daemon.json")
	var d map[string]any
	json.Unmarshal([]byte(e.read("etc/docker/daemon.json")), &d)
	d["debug"] = true
	b, _ := json.Marshal(d)
	if err := os.WriteFile(daemon, b, 0o644); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(e.root, "etc/containerd/certs.d/docker.io/hosts.toml")
	h := e.read("etc/containerd/certs.d/docker.io/hosts.toml") + "\n[host.\"https://cache.lan\"]\n  capabilities = [\"pull\"]\n"
	if err := os.WriteFile(hosts, []byte(h), 0o644); err != nil {
		t.Fatal(err)
	}
	e.leave()
	got := e.read("etc/docker/daemon.json")
	if strings.Contains(got, "31002") || !strings.Contains(got, `"debug": true`) {
		t.Errorf("daemon.json after leave:\n%s", got)
	}
	got = e.read("etc/containerd/certs.d/docker.io/hosts.toml")
	if strings.Contains(got, "31002") || !strings.Contains(got, "cache.lan") {
		t.Errorf("hosts.toml after leave:\n%s", got)
	}
	if !strings.Contains(e.output(), "was changed after join: removed edgecr's mirror entry only") {
		t.Errorf("leave does not say it kept the user's change:\n%s", e.output())
	}
}

// TestPlanJoinMirror: --dry-run says what --mirror would change, and
// changes nothing.
func TestPlanJoinMirror(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker", "etc/containerd"}}})
	before := e.snapshot()
	res, err := e.sys.PlanJoin(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}), Mirrors: []string{"docker.io"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range res.Steps {
		if s.Step == "mirror" {
			got = append(got, s.Detail)
		}
	}
	if len(got) != 2 || !strings.Contains(got[0], "registry-mirrors") || !strings.Contains(got[1], "docker.io/hosts.toml") {
		t.Errorf("plan's mirror steps: %q", got)
	}
	e.requireSnapshot(before, "join --dry-run --mirror")
}
