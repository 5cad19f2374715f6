package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/credhelper"
	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/edgecr/edgecr/hostsfile"
	"github.com/edgecr/edgecr/trust/trusttest"
)

func TestJoinHappyPathThenLeave(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	before := e.snapshot()
	token := e.dev.Token(agenttest.TokenOptions{})

	res := e.mustJoin(token)

	reg := e.dev.Registry()
	if res.Registry != reg || res.IP != "127.0.0.1" || res.Role != "push" || res.ClientID == "" || res.Username != res.ClientID {
		t.Errorf("result = %+v", res)
	}
	if res.CAFingerprint != "sha256:"+e.dev.Pin {
		t.Errorf("fingerprint = %s, want sha256:%s", res.CAFingerprint, e.dev.Pin)
	}
	if e.dev.JoinHits() != 1 {
		t.Errorf("join endpoint hit %d times, want 1", e.dev.JoinHits())
	}
	out := e.output()
	for _, want := range []string{
		"✓ bootstrap: joined " + reg + " as " + res.ClientID + " (role push)",
		"✓ hosts: added 127.0.0.1 ecr.box.internal to " + filepath.Join(e.root, "etc/hosts"),
		"✓ trust store: installed the CA",
		"✓ docker: configured: " + filepath.Join(e.root, "etc/docker/certs.d", reg, "ca.crt"),
		"- runtimes: not present: containerd, containers, k3s",
		"✓ credential: stored the credential of " + res.Username,
		"✓ docker config: set credHelpers[\"" + reg + "\"] = \"edgecr\"",
		"✓ verify: ecr.box.internal resolves to 127.0.0.1",
		"✓ verify: TLS to " + reg + " verifies with the trust bundle",
		"✓ verify: docker-credential-edgecr returns the credential of " + res.Username,
		"✓ verify: GET https://" + reg + "/v2/ as " + res.Username + ": 200",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The steps are reported in order.
	var order []string
	for _, ev := range res.Events {
		if len(order) == 0 || order[len(order)-1] != ev.Step {
			order = append(order, ev.Step)
		}
	}
	if !slices.Equal(order, agent.Steps()) {
		t.Errorf("steps reported in order %v, want %v", order, agent.Steps())
	}

	hosts := e.read("etc/hosts")
	if !strings.Contains(hosts, "# BEGIN edgecr ecr.box.internal\n127.0.0.1 ecr.box.internal\n# END edgecr ecr.box.internal\n") {
		t.Errorf("hosts file:\n%s", hosts)
	}
	if !strings.Contains(e.read("etc/ssl/certs/ca-certificates.crt"), strings.TrimSpace(string(e.dev.CAPEM))) {
		t.Error("the trust bundle does not hold the device CA")
	}
	if got := e.read("usr/local/share/ca-certificates/edgecr-" + agent.TrustName(reg) + ".crt"); got != string(e.dev.CAPEM) {
		t.Errorf("anchor = %q", got)
	}
	if !strings.Contains(e.dockerConfig(), `"`+reg+`": "edgecr"`) {
		t.Errorf("config.json:\n%s", e.dockerConfig())
	}
	credPath := filepath.Join(e.home, ".config/edgecr/credentials.json")
	requireMode(t, credPath, 0o600)
	u, p, err := credhelper.NewStore(credPath).Get(reg)
	if err != nil || u != res.Username || p != e.dev.Clients()[u].Password {
		t.Errorf("stored credential = %q, %v", u, err)
	}

	statePath := filepath.Join(e.root, "var/lib/edgecr/state.json")
	requireMode(t, statePath, 0o644) // no secret in it: edgecr status reads it unprivileged
	requireMode(t, filepath.Dir(statePath), 0o755)
	st := e.state()
	if len(st.Registries) != 1 {
		t.Fatalf("state has %d entries", len(st.Registries))
	}
	ent := st.Registries[0]
	if !ent.Complete() || ent.PendingSecret != "" || ent.Hosts == nil || !ent.Hosts.Added || ent.Trust == nil || !ent.Trust.Installed ||
		ent.Runtimes == nil || len(ent.Runtimes.Files) != 1 || ent.Credential == nil || ent.DockerConfig == nil || !ent.DockerConfig.Change.Changed() {
		t.Errorf("state entry = %s", toJSON(t, ent))
	}
	stateBytes, _ := os.ReadFile(statePath)
	e.requireNoSecret(token, toJSON(t, res), string(stateBytes))

	// Leave: revoke, then everything back as it was.
	lr := e.leave()
	if len(lr) != 1 || !lr[0].Revoked || !lr[0].Done {
		t.Errorf("leave = %s", toJSON(t, lr))
	}
	if e.dev.Deletes() != 1 || !e.dev.Clients()[res.Username].Revoked {
		t.Errorf("the device did not revoke the client (deletes %d)", e.dev.Deletes())
	}
	for _, want := range []string{
		"✓ device: revoked " + res.ClientID,
		"✓ docker config: removed credHelpers",
		"✓ credential: erased",
		"✓ runtimes: removed",
		"✓ trust store: removed the CA",
		"✓ hosts: removed 127.0.0.1 ecr.box.internal",
	} {
		if !strings.Contains(e.output(), want) {
			t.Errorf("leave output lacks %q:\n%s", want, e.output())
		}
	}
	e.requireSnapshot(before, "after join and leave")
	e.requireNoSecret(token, toJSON(t, lr))
}

func requireMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s mode = %v, want %v", path, fi.Mode().Perm(), want)
	}
}

// A token pinned to another CA is refused in the TLS handshake: the device
// never sees a request, let alone the secret, and the client is unchanged.
func TestJoinPinMismatchRefusesBeforeSendingTheSecret(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	_, otherPin := agenttest.NewCAPEM(t)
	token := e.dev.Token(agenttest.TokenOptions{Pin: otherPin})
	before := e.snapshot()

	_, err := e.join(token)
	if !errors.Is(err, agent.ErrPinMismatch) {
		t.Fatalf("join = %v, want a pin mismatch", err)
	}
	want := fmt.Sprintf("CA pin mismatch: got sha256:%s, want sha256:%s", e.dev.Pin, otherPin)
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	if e.dev.JoinHits() != 0 || len(e.dev.Requests()) != 0 {
		t.Errorf("the device served %v", e.dev.Requests())
	}
	e.requireSnapshot(before, "after a refused join")
	e.requireNoSecret(token, err.Error())
}

// The device's answer must carry the pinned CA too; a device that answers
// with another one gets its new client revoked and nothing changes here.
func TestJoinRefusesAnswerWithAnotherCA(t *testing.T) {
	other, otherPin := agenttest.NewCAPEM(t)
	e := newEnv(t, envOptions{device: agenttest.DeviceOptions{AnswerCAPEM: other}})
	before := e.snapshot()
	_, err := e.join(e.dev.Token(agenttest.TokenOptions{}))
	if !errors.Is(err, agent.ErrPinMismatch) || !strings.Contains(err.Error(), "checking the CA in the answer: CA pin mismatch: got sha256:"+otherPin) {
		t.Fatalf("join = %v", err)
	}
	if e.dev.Deletes() != 1 {
		t.Errorf("the client the device made was not revoked")
	}
	e.requireSnapshot(before, "after a refused answer")
}

func TestJoinTokenErrors(t *testing.T) {
	dev := agenttest.NewDevice(t, agenttest.DeviceOptions{})
	spent := dev.Token(agenttest.TokenOptions{Uses: 1})
	first := newEnv(t, envOptions{dev: dev})
	first.mustJoin(spent)

	wrongSecret := func() string {
		tok := dev.Token(agenttest.TokenOptions{})
		return tok[:len(tok)-43] + strings.Repeat("A", 43)
	}()
	tests := []struct {
		name    string
		device  *agenttest.Device
		token   func(*agenttest.Device) string
		is      error
		message string
	}{
		{"expired", dev, func(d *agenttest.Device) string { return d.Token(agenttest.TokenOptions{Expired: true}) }, agent.ErrTokenExpired, "has expired"},
		{"used up", dev, func(*agenttest.Device) string { return spent }, agent.ErrTokenUsedUp, "has been used up"},
		{"invalid", dev, func(*agenttest.Device) string { return wrongSecret }, agent.ErrTokenRejected, "does not accept join token"},
		{"throttled", nil, func(d *agenttest.Device) string { return d.Token(agenttest.TokenOptions{}) }, agent.ErrThrottled, "retry after 6s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.device
			if d == nil {
				d = agenttest.NewDevice(t, agenttest.DeviceOptions{Throttle: true})
			}
			e := newEnv(t, envOptions{dev: d})
			// The throttling device asks for 6 s: more than this join waits.
			e.retry = agent.RetryPolicy{Attempts: 3, MaxWait: 5 * time.Second}
			before := e.snapshot()
			token := tt.token(d)
			_, err := e.join(token)
			if !errors.Is(err, tt.is) {
				t.Fatalf("join = %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q lacks %q", err, tt.message)
			}
			e.requireSnapshot(before, "after a refused token")
			e.requireNoSecret(token, err.Error())
		})
	}
}

// A hosts line of the user's own for the registry host is never taken over:
// join refuses and says why before it spends the token (the device
// certificate names the host), so the same token works once the line is
// gone.
func TestJoinRefusesUserHostsLine(t *testing.T) {
	userLine := "10.9.8.7   ecr.box.internal   # my registry\n"
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Hosts: "127.0.0.1 localhost\n" + userLine}})
	before := e.snapshot()
	token := e.dev.Token(agenttest.TokenOptions{Uses: 1})
	_, err := e.join(token)
	if !errors.Is(err, hostsfile.ErrHostOwnedByUser) {
		t.Fatalf("join = %v, want ErrHostOwnedByUser", err)
	}
	if !strings.Contains(err.Error(), `line 2 "10.9.8.7   ecr.box.internal   # my registry"`) || !strings.Contains(err.Error(), "not spent") {
		t.Errorf("error does not say which line, or that the token is unspent: %v", err)
	}
	e.requireSnapshot(before, "after a refused join")
	if e.dev.JoinHits() != 0 || len(e.dev.Clients()) != 0 {
		t.Errorf("the token was spent: join hits %d, clients %d", e.dev.JoinHits(), len(e.dev.Clients()))
	}

	// edgecr's markers that do not pair up are refused before the token
	// is spent too.
	os.WriteFile(filepath.Join(e.root, "etc/hosts"), []byte("127.0.0.1 localhost\n# BEGIN edgecr ecr.box.internal\n"), 0o644)
	if _, err := e.join(token); !errors.Is(err, hostsfile.ErrMalformedBlock) || e.dev.JoinHits() != 0 {
		t.Errorf("join with a malformed block = %v (join hits %d)", err, e.dev.JoinHits())
	}

	// The line gone, the one-use token joins.
	os.WriteFile(filepath.Join(e.root, "etc/hosts"), []byte("127.0.0.1 localhost\n"), 0o644)
	e.mustJoin(token)
}

// A config.json that does not parse is refused before the token is spent,
// and left untouched.
func TestJoinMalformedDockerConfig(t *testing.T) {
	e := newEnv(t, envOptions{})
	cfg := filepath.Join(e.home, ".docker", "config.json")
	os.MkdirAll(filepath.Dir(cfg), 0o700)
	os.WriteFile(cfg, []byte(`{"auths": {"x": `), 0o600)
	before := e.snapshot()
	_, err := e.join(e.dev.Token(agenttest.TokenOptions{}))
	if !errors.Is(err, credhelper.ErrMalformed) {
		t.Fatalf("join = %v, want ErrMalformed", err)
	}
	if e.dev.JoinHits() != 0 {
		t.Error("the token was spent")
	}
	e.requireSnapshot(before, "after a refused join")
}

// A failure at a later step undoes every earlier one in reverse and
// revokes the new client: here config.json turns malformed after the trust
// step (as if another program wrote it), so the credentials step fails.
func TestJoinFailureUndoesEarlierSteps(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker", "etc/containerd"}}})
	cfg := filepath.Join(e.home, ".docker", "config.json")
	before := e.snapshot()
	bad := []byte("{\"credsStore\": 42}\n")
	_, err := e.sys.Join(context.Background(), agent.JoinOptions{
		URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}), Report: e.report,
		AfterStep: func(step string) error {
			if step == agent.StepTrust {
				os.MkdirAll(filepath.Dir(cfg), 0o700)
				return os.WriteFile(cfg, bad, 0o600)
			}
			return nil
		},
	})
	if !errors.Is(err, credhelper.ErrMalformed) {
		t.Fatalf("join = %v, want ErrMalformed", err)
	}
	if got, _ := os.ReadFile(cfg); string(got) != string(bad) {
		t.Errorf("config.json = %q, want it untouched", got)
	}
	os.RemoveAll(filepath.Dir(cfg))
	e.requireSnapshot(before, "after a rolled-back join")
	if e.dev.Deletes() != 1 {
		t.Errorf("the client was not revoked (deletes %d)", e.dev.Deletes())
	}
	out := e.output()
	for _, want := range []string{"↺ runtimes: removed", "↺ trust store: removed", "↺ hosts: removed", "✓ device: revoked"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Undone in reverse: runtimes before trust store before hosts before the device.
	if !(strings.Index(out, "↺ runtimes") < strings.Index(out, "↺ trust store") &&
		strings.Index(out, "↺ trust store") < strings.Index(out, "↺ hosts") &&
		strings.Index(out, "↺ hosts") < strings.Index(out, "device: revoked")) {
		t.Errorf("rollback not in reverse order:\n%s", out)
	}
}

// Joining twice leaves one hosts line, one certificate, one config entry,
// and does not spend the token while the credential works.
func TestJoinTwice(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	before := e.snapshot()
	token := e.dev.Token(agenttest.TokenOptions{Uses: 2})
	first := e.mustJoin(token)
	afterFirst := e.snapshot()
	second := e.mustJoin(token)

	if !second.AlreadyJoined || second.ClientID != first.ClientID {
		t.Errorf("second join = %s", toJSON(t, second))
	}
	if e.dev.JoinHits() != 1 {
		t.Errorf("join endpoint hit %d times, want 1", e.dev.JoinHits())
	}
	if !strings.Contains(e.output(), "✓ bootstrap: already joined as "+first.ClientID) {
		t.Errorf("output:\n%s", e.output())
	}
	for _, ev := range second.Events {
		if ev.Status == agent.StatusChanged {
			t.Errorf("second join changed something: %s", ev)
		}
	}
	// Everything but the state's timestamps is as after the first join.
	delete(afterFirst, "var/lib/edgecr/state.json")
	now := e.snapshot()
	delete(now, "var/lib/edgecr/state.json")
	if diff := trusttest.DiffSnapshots(afterFirst, now); diff != "" {
		t.Errorf("second join changed files:\n%s", diff)
	}
	e.requireOneOfEach()

	// Revoked on the device: the next join spends the token for a new client.
	e.dev.Revoke(first.Username)
	third := e.mustJoin(token)
	if third.AlreadyJoined || third.ClientID == first.ClientID || e.dev.JoinHits() != 2 {
		t.Errorf("third join = %s (join hits %d)", toJSON(t, third), e.dev.JoinHits())
	}
	e.requireOneOfEach()
	e.leave()
	e.requireSnapshot(before, "after join, join, rejoin and leave")
}

func (e *env) requireOneOfEach() {
	e.t.Helper()
	if n := count(e.read("etc/hosts"), "ecr.box.internal\n") - 2; n != 1 { // the two markers end with the name too
		e.t.Errorf("hosts file maps the registry %d times:\n%s", n, e.read("etc/hosts"))
	}
	anchors, _ := filepath.Glob(filepath.Join(e.root, "usr/local/share/ca-certificates/*"))
	if len(anchors) != 1 {
		e.t.Errorf("anchors: %v", anchors)
	}
	if n := count(e.read("etc/ssl/certs/ca-certificates.crt"), strings.TrimSpace(string(e.dev.CAPEM))); n != 1 {
		e.t.Errorf("the bundle holds the CA %d times", n)
	}
	if n := count(e.dockerConfig(), e.dev.Registry()); n != 1 {
		e.t.Errorf("config.json names the registry %d times:\n%s", n, e.dockerConfig())
	}
	if n := len(e.state().Registries); n != 1 {
		e.t.Errorf("state has %d entries", n)
	}
}

var errCrash = errors.New("simulated crash")

// A join that dies right after any step (its state saved) converges when
// run again, and leave still restores everything.
func TestJoinCrashAfterEachStepConverges(t *testing.T) {
	for _, step := range agent.Steps() {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker", "etc/rancher/k3s"}}})
			before := e.snapshot()
			token := e.dev.Token(agenttest.TokenOptions{Uses: 1})
			_, err := e.sys.Join(context.Background(), agent.JoinOptions{
				URL: e.dev.URL, Token: token, Report: e.report,
				AfterStep: func(s string) error {
					if s == step {
						return errCrash
					}
					return nil
				},
			})
			if !errors.Is(err, errCrash) {
				t.Fatalf("join = %v, want the crash", err)
			}
			st := e.state()
			if len(st.Registries) != 1 || !slices.Equal(st.Registries[0].Steps, agent.Steps()[:slices.Index(agent.Steps(), step)+1]) {
				t.Fatalf("state after the crash = %s", toJSON(t, st))
			}
			if step == agent.StepBootstrap {
				if st.Registries[0].PendingSecret == "" {
					t.Error("the credential was not kept across the crash")
				}
				// Kept in a file of its own, never in the world-readable state.
				requireMode(t, e.sys.State.SecretsPath(), 0o600)
				stateBytes, _ := os.ReadFile(e.sys.State.Path())
				e.requireNoSecret(token, string(stateBytes))
			}

			// The token had one use: the rerun must not need it again.
			res := e.mustJoin(token)
			if !res.AlreadyJoined || e.dev.JoinHits() != 1 {
				t.Errorf("rerun = %s (join hits %d)", toJSON(t, res), e.dev.JoinHits())
			}
			e.requireOneOfEach()
			rs, err := e.sys.Status(context.Background())
			if err != nil || len(rs) != 1 || !rs[0].OK() {
				t.Errorf("status after the rerun = %s, %v", toJSON(t, rs), err)
			}
			stateBytes, _ := os.ReadFile(e.sys.State.Path())
			if strings.Contains(string(stateBytes), "pendingSecret") {
				t.Error("the state still holds the credential after the credentials step")
			}
			if _, err := os.Stat(e.sys.State.SecretsPath()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the pending secret stays after the credentials step: %v", err)
			}
			e.leave()
			e.requireSnapshot(before, "after crash, rerun and leave")
		})
	}
}

// A crash followed directly by leave (no rerun) also restores everything.
func TestLeaveAfterCrash(t *testing.T) {
	for _, step := range agent.Steps()[:4] {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker", "etc/containerd"}}})
			before := e.snapshot()
			_, err := e.sys.Join(context.Background(), agent.JoinOptions{
				URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}),
				AfterStep: func(s string) error {
					if s == step {
						return errCrash
					}
					return nil
				},
			})
			if !errors.Is(err, errCrash) {
				t.Fatalf("join = %v", err)
			}
			lr := e.leave()
			if len(lr) != 1 || !lr[0].Revoked {
				t.Errorf("leave = %s", toJSON(t, lr))
			}
			e.requireSnapshot(before, "after crash and leave")
		})
	}
}

func TestJoinConfiguresEveryRuntimeFound(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker", "etc/containerd", "etc/containers", "etc/rancher/k3s"}}})
	before := e.snapshot()
	res := e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	reg := e.dev.Registry()
	for _, f := range []string{
		"etc/docker/certs.d/" + reg + "/ca.crt",
		"etc/containerd/certs.d/" + reg + "/hosts.toml",
		"etc/containers/certs.d/" + reg + "/ca.crt",
		"etc/rancher/k3s/registries.yaml",
	} {
		if _, err := os.Stat(filepath.Join(e.root, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !slices.Contains(res.Notices, "k3s reads registries.yaml only when it starts: restart it (systemctl restart k3s, or k3s-agent on agent nodes)") {
		t.Errorf("notices = %q", res.Notices)
	}
	if strings.Contains(e.output(), "not present") {
		t.Errorf("output:\n%s", e.output())
	}
	rs, err := e.sys.Status(context.Background())
	if err != nil || !rs[0].OK() {
		t.Fatalf("status = %s, %v", toJSON(t, rs), err)
	}
	var names []string
	for _, c := range rs[0].Checks {
		names = append(names, c.Name)
	}
	for _, want := range []string{"CA in docker", "CA in containerd", "CA in containers", "CA in k3s"} {
		if !slices.Contains(names, want) {
			t.Errorf("status checks %v lack %q", names, want)
		}
	}
	e.leave()
	e.requireSnapshot(before, "after join and leave")
}

// Without the helper on PATH, join warns with the fix and verifies with
// the stored credential.
func TestJoinWithoutHelperOnPath(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.helper.Missing.Store(true)
	res := e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	if !strings.Contains(e.output(), "! helper: docker-credential-edgecr is not on PATH") || len(res.Warnings) == 0 {
		t.Errorf("output:\n%s\nwarnings %q", e.output(), res.Warnings)
	}
	if !strings.Contains(e.output(), ": 200") {
		t.Errorf("the registry was not checked:\n%s", e.output())
	}
}

// Dry run: the pin is checked over the network (GET /edgecr/v1/ca only),
// the token is not spent, nothing changes.
func TestPlanJoinChangesNothing(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	before := e.snapshot()
	token := e.dev.Token(agenttest.TokenOptions{})
	res, err := e.sys.PlanJoin(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: token, Name: "laptop", Report: e.report})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.dev.Requests(); !slices.Equal(got, []string{"GET /edgecr/v1/ca"}) {
		t.Errorf("device served %v", got)
	}
	if res.Registry != e.dev.Registry() || res.IP != "127.0.0.1" {
		t.Errorf("plan = %s", toJSON(t, res))
	}
	out := e.output()
	for _, want := range []string{
		"add 127.0.0.1 ecr.box.internal to " + filepath.Join(e.root, "etc/hosts"),
		"write " + filepath.Join(e.root, "usr/local/share/ca-certificates/edgecr-"+agent.TrustName(e.dev.Registry())+".crt"),
		"run update-ca-certificates --certsconf",
		"write " + filepath.Join(e.root, "etc/docker/certs.d", e.dev.Registry(), "ca.crt"),
		"set credHelpers",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	e.requireSnapshot(before, "after a dry run")
	e.requireNoSecret(token, toJSON(t, res))

	// With the wrong pin the dry run fails the same way join does.
	_, otherPin := agenttest.NewCAPEM(t)
	_, err = e.sys.PlanJoin(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{Pin: otherPin})})
	if !errors.Is(err, agent.ErrPinMismatch) {
		t.Errorf("dry run with the wrong pin = %v", err)
	}
}

// Two devices joined side by side: each leave takes only its own.
func TestTwoDevices(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	before := e.snapshot()
	other := agenttest.NewDevice(t, agenttest.DeviceOptions{RegistryHost: "ecr.other.internal"})
	e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	if _, err := e.sys.Join(context.Background(), agent.JoinOptions{URL: other.URL, Token: other.Token(agenttest.TokenOptions{}), Report: e.report}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.state().Registries); n != 2 {
		t.Fatalf("state has %d entries", n)
	}
	if _, err := e.sys.Leave(context.Background(), agent.LeaveOptions{Registry: other.Registry()}); err != nil {
		t.Fatal(err)
	}
	if st := e.state(); len(st.Registries) != 1 || st.Registries[0].Registry != e.dev.Registry() {
		t.Errorf("state = %s", toJSON(t, st))
	}
	if rs, err := e.sys.Status(context.Background()); err != nil || !rs[0].OK() {
		t.Errorf("status = %s, %v", toJSON(t, rs), err)
	}
	if _, err := e.sys.Leave(context.Background(), agent.LeaveOptions{Registry: "nope:1"}); !errors.Is(err, agent.ErrNotJoined) {
		t.Errorf("leave of an unknown registry = %v", err)
	}
	e.leave()
	e.requireSnapshot(before, "after two joins and leaves")
}

// The whole round trip with the real update-ca-certificates, relocated into
// the root: TLS verifies against the bundle the real tool wrote, and leave
// gives back /etc/ssl/certs and the bundle byte for byte.
func TestJoinLeaveWithRealUpdateCACertificates(t *testing.T) {
	testenv.NeedCommand(t, "update-ca-certificates", "the Debian trust store round trip")
	e := newEnv(t, envOptions{root: agenttest.RootOptions{RealTool: true, Runtimes: []string{"etc/docker"}}})
	before := e.snapshot()
	bundle := e.read("etc/ssl/certs/ca-certificates.crt")
	e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	if !strings.Contains(e.output(), "verifies with the trust bundle "+filepath.Join(e.root, "etc/ssl/certs/ca-certificates.crt")) {
		t.Errorf("output:\n%s", e.output())
	}
	if link, err := os.Readlink(filepath.Join(e.root, "etc/ssl/certs/edgecr-"+agent.TrustName(e.dev.Registry())+".pem")); err != nil {
		t.Errorf("no link for the anchor in etc/ssl/certs: %v (%s)", err, link)
	}
	e.leave()
	if got := e.read("etc/ssl/certs/ca-certificates.crt"); got != bundle {
		t.Error("the bundle differs after leave")
	}
	e.requireSnapshot(before, "after join and leave with the real tool")
}

// A rerun after a crash that cannot reach the device keeps the earlier
// run's work (and its credential: the token is spent) for the next try.
func TestRerunWithDeviceDownKeepsTheInterruptedJoin(t *testing.T) {
	e := newEnv(t, envOptions{})
	token := e.dev.Token(agenttest.TokenOptions{})
	_, err := e.sys.Join(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: token,
		AfterStep: func(s string) error {
			if s == agent.StepHosts {
				return errCrash
			}
			return nil
		}})
	if !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	afterCrash := e.snapshot()
	delete(afterCrash, "var/lib/edgecr/state.json") // checked below
	url := e.dev.URL
	e.dev.Close()
	if _, err := e.sys.Join(context.Background(), agent.JoinOptions{URL: url, Token: token}); err == nil {
		t.Fatal("join with the device down succeeded")
	}
	st := e.state()
	if len(st.Registries) != 1 || st.Registries[0].PendingSecret == "" || !st.Registries[0].Done(agent.StepHosts) {
		t.Errorf("state = %s", toJSON(t, st))
	}
	now := e.snapshot()
	delete(now, "var/lib/edgecr/state.json")
	if diff := trusttest.DiffSnapshots(afterCrash, now); diff != "" {
		t.Errorf("a failed rerun changed:\n%s", diff)
	}
}

// A join cancelled mid-way (Ctrl-C) still rolls back completely.
func TestJoinCancelledRollsBack(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	before := e.snapshot()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := e.sys.Join(ctx, agent.JoinOptions{URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}), Report: e.report,
		AfterStep: func(s string) error {
			if s == agent.StepTrust {
				cancel()
			}
			return nil
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("join = %v", err)
	}
	e.requireSnapshot(before, "after a cancelled join")
	if e.dev.Deletes() != 1 {
		t.Errorf("the client was not revoked")
	}
}

// A device that throttles the address for a moment (a neighbour behind
// the same NAT guessed): join waits as Retry-After says, says what it is
// waiting for, and finishes on its own.
func TestJoinWaitsOutAThrottlingDevice(t *testing.T) {
	e := newEnv(t, envOptions{device: agenttest.DeviceOptions{ThrottleFirst: 2}})
	start := time.Now()
	e.mustJoin(e.dev.Token(agenttest.TokenOptions{Uses: 1}))
	if hits := e.dev.JoinHits(); hits != 3 {
		t.Errorf("join requests: %d, want 3 (two throttled)", hits)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("joined after %s: two Retry-After: 1 were not waited out", d)
	}
	out := e.output()
	for _, want := range []string{
		"! bootstrap: joining " + e.dev.URL,
		"the device is throttling requests from this address: retry after 1s",
		"joining again in 1", "(attempt 2 of 8)", "(attempt 3 of 8)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
