package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/hostsfile"
)

func checkByName(rs agent.RegistryStatus, name string) (agent.Check, bool) {
	for _, c := range rs.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return agent.Check{}, false
}

func TestStatusAllOK(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	token := e.dev.Token(agenttest.TokenOptions{})
	e.mustJoin(token)
	before := e.snapshot()
	rs, err := e.sys.Status(context.Background())
	if err != nil || len(rs) != 1 {
		t.Fatalf("status = %v, %v", rs, err)
	}
	if !rs[0].OK() {
		t.Errorf("status = %s", toJSON(t, rs))
	}
	want := []string{
		agent.CheckJoin, agent.CheckHosts, agent.CheckResolve, agent.CheckTrustStore, "CA in docker",
		agent.CheckTLS, agent.CheckDockerConfig, agent.CheckHelperPath, agent.CheckHelperGet, agent.CheckRegistry,
	}
	var got []string
	for _, c := range rs[0].Checks {
		got = append(got, c.Name)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("checks = %q\nwant     %q", got, want)
	}
	e.requireSnapshot(before, "after status")
	e.requireNoSecret(token, toJSON(t, rs))
}

func TestStatusBrokenHops(t *testing.T) {
	tests := []struct {
		name   string
		breakf func(*testing.T, *env)
		check  string
		fix    string
	}{
		{"hosts entry removed", func(t *testing.T, e *env) {
			if _, err := hostsfile.NewFile(filepath.Join(e.root, "etc/hosts")).Remove(context.Background(), "ecr.box.internal"); err != nil {
				t.Fatal(err)
			}
		}, agent.CheckHosts, "edgecr join https://127.0.0.1:"},
		{"user line before ours", func(t *testing.T, e *env) {
			p := filepath.Join(e.root, "etc/hosts")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, append([]byte("10.1.1.1 ecr.box.internal\n"), b...), 0o644)
		}, agent.CheckHosts, "remove or comment out line 1"},
		{"CA taken out of the trust store", func(t *testing.T, e *env) {
			os.Remove(filepath.Join(e.root, "usr/local/share/ca-certificates/edgecr-"+agent.TrustName(e.dev.Registry())+".crt"))
		}, agent.CheckTrustStore, "edgecr join"},
		{"docker certs.d removed", func(t *testing.T, e *env) {
			os.RemoveAll(filepath.Join(e.root, "etc/docker/certs.d"))
		}, "CA in docker", "edgecr join"},
		{"bundle without the CA", func(t *testing.T, e *env) {
			p := filepath.Join(e.root, "etc/ssl/certs/ca-certificates.crt")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), strings.TrimSpace(string(e.dev.CAPEM)), "", 1)), 0o644)
		}, agent.CheckTLS, "edgecr join"},
		{"credHelpers entry removed", func(t *testing.T, e *env) {
			os.WriteFile(filepath.Join(e.home, ".docker/config.json"), []byte("{}\n"), 0o600)
		}, agent.CheckDockerConfig, "edgecr join"},
		{"helper not on PATH", func(t *testing.T, e *env) { e.helper.Missing.Store(true) }, agent.CheckHelperPath, "install docker-credential-edgecr"},
		{"credential erased", func(t *testing.T, e *env) {
			os.WriteFile(filepath.Join(e.home, ".config/edgecr/credentials.json"), []byte(`{"version":1,"registries":{}}`), 0o600)
		}, agent.CheckHelperGet, "edgecr join"},
		{"client revoked on the device", func(t *testing.T, e *env) {
			for u := range e.dev.Clients() {
				e.dev.Revoke(u)
			}
		}, agent.CheckRegistry, "run `edgecr leave`, then join again with a new token"},
		{"device down", func(t *testing.T, e *env) { e.dev.Close() }, agent.CheckRegistry, "reachable at 127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
			e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
			tt.breakf(t, e)
			rs, err := e.sys.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rs[0].OK() {
				t.Fatalf("status is all ok: %s", toJSON(t, rs))
			}
			c, found := checkByName(rs[0], tt.check)
			if !found || c.OK {
				t.Fatalf("check %q = %+v; status %s", tt.check, c, toJSON(t, rs))
			}
			if !strings.Contains(c.Fix, tt.fix) {
				t.Errorf("fix = %q, want it to hold %q", c.Fix, tt.fix)
			}
		})
	}
}

func TestStatusNotJoined(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := e.snapshot()
	_, err := e.sys.Status(context.Background())
	if !errors.Is(err, agent.ErrNotJoined) {
		t.Errorf("status = %v, want ErrNotJoined", err)
	}
	e.requireSnapshot(before, "after status")
}

func TestStatusIncompleteJoin(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, err := e.sys.Join(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}),
		AfterStep: func(s string) error {
			if s == agent.StepHosts {
				return errCrash
			}
			return nil
		}})
	if !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	rs, err := e.sys.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := checkByName(rs[0], agent.CheckJoin)
	if c.OK || !strings.Contains(c.Detail, "steps done: bootstrap, hosts") || !strings.Contains(c.Fix, "edgecr leave") {
		t.Errorf("join check = %+v", c)
	}
	if c, _ := checkByName(rs[0], agent.CheckHosts); !c.OK {
		t.Errorf("hosts check = %+v", c)
	}
}

// Leave revokes on the device; a device that is down is a warning and the
// client is still restored.
func TestLeaveDeviceUnreachable(t *testing.T) {
	e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker"}}})
	before := e.snapshot()
	res := e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	e.dev.Close()
	lr := e.leave()
	if len(lr) != 1 || lr[0].Revoked || !lr[0].Done {
		t.Errorf("leave = %s", toJSON(t, lr))
	}
	if !strings.Contains(e.output(), "! device: could not revoke "+res.ClientID) ||
		!strings.Contains(e.output(), "edgecrd clients revoke "+res.ClientID) {
		t.Errorf("output:\n%s", e.output())
	}
	e.requireSnapshot(before, "after join and leave with the device down")
}

func TestLeaveAlreadyRevokedAndIdempotent(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := e.snapshot()
	res := e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	e.dev.Revoke(res.Username)
	lr := e.leave()
	if !lr[0].Revoked || !strings.Contains(e.output(), "already revoked") {
		t.Errorf("leave = %s\n%s", toJSON(t, lr), e.output())
	}
	e.requireSnapshot(before, "after join and leave")
	if lr := e.leave(); len(lr) != 0 {
		t.Errorf("second leave = %s", toJSON(t, lr))
	}
	e.requireSnapshot(before, "after a second leave")
}

// A leave that cannot undo one thing keeps it (and the entry) for the next
// leave and still undoes the rest.
func TestLeaveKeepsWhatItCouldNotUndo(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := e.snapshot()
	e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	cfg := filepath.Join(e.home, ".docker/config.json")
	good, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte("{broken"), 0o600)
	_, err := e.sys.Leave(context.Background(), agent.LeaveOptions{Report: e.report})
	if err == nil {
		t.Fatal("leave succeeded with a malformed config.json")
	}
	st := e.state()
	if len(st.Registries) != 1 || st.Registries[0].DockerConfig == nil || st.Registries[0].Hosts != nil {
		t.Fatalf("state = %s", toJSON(t, st))
	}
	if got, _ := os.ReadFile(cfg); string(got) != "{broken" {
		t.Errorf("config.json was touched: %q", got)
	}
	os.WriteFile(cfg, good, 0o600)
	e.leave()
	e.requireSnapshot(before, "after the second leave")
}

// unreadableDocker is the Docker config of a join made by root, as another
// user sees it: reading it is permission denied.
type unreadableDocker struct{ agent.DockerConfig }

func (unreadableDocker) Helper(path, _ string) (string, error) {
	return "", &os.PathError{Op: "open", Path: path, Err: os.ErrPermission}
}

// notFoundHelper is the helper run as a user whose store lacks the
// credential.
type notFoundHelper struct{ agent.Helper }

func (notFoundHelper) Get(context.Context, string, string) (string, agent.Secret, error) {
	return "", "", errors.New("credentials not found in native keychain")
}

// A user checking a join root made sees "run it with sudo", not "fix the
// JSON" or "join again".
func TestStatusOtherUsersJoinSaysSudo(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	e.sys.Docker = unreadableDocker{e.sys.Docker}
	e.sys.Helper = notFoundHelper{e.sys.Helper}
	rs, err := e.sys.Status(context.Background())
	if err != nil || len(rs) != 1 {
		t.Fatalf("status = %v, %v", rs, err)
	}
	for _, name := range []string{agent.CheckDockerConfig, agent.CheckHelperGet} {
		c, _ := checkByName(rs[0], name)
		if c.OK || !strings.Contains(c.Fix, "sudo edgecr status") || strings.Contains(c.Fix, "JSON") || strings.Contains(c.Fix, "edgecr join") {
			t.Errorf("%s: %+v", name, c)
		}
	}
}
