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
)

// A device (or whoever made the token) must not choose names that are not
// its own: each hostile device below is refused with nothing written here
// (hosts file, trust stores, runtimes, config.json, state), and when the
// token was spent, the client it made is revoked.
func TestJoinRefusesHostileDevices(t *testing.T) {
	for _, c := range []struct {
		name string
		dev  agenttest.DeviceOptions
		// spent: refused after the join answer (the token is spent and
		// the new client revoked) rather than before.
		spent bool
		want  string
	}{
		{"unconstrained CA", agenttest.DeviceOptions{UnconstrainedCA: true}, false, "no critical name constraints"},
		{"registry-1.docker.io", agenttest.DeviceOptions{RegistryHost: "registry-1.docker.io"}, false, `"docker.io" is or covers docker.io`},
		{"github.com", agenttest.DeviceOptions{RegistryHost: "github.com", PermittedDNS: []string{"github.com", "localhost"}}, false, `"github.com" is or covers github.com`},
		{"a public suffix zone", agenttest.DeviceOptions{PermittedDNS: []string{"internal", "localhost"}}, false, `"internal" is a public suffix`},
		{"co.uk", agenttest.DeviceOptions{RegistryHost: "ecr.box.co.uk", PermittedDNS: []string{"co.uk", "localhost"}}, false, `"co.uk" is a public suffix`},
		{"amazonaws", agenttest.DeviceOptions{RegistryHost: "ecr.x.amazonaws.com", PermittedDNS: []string{"x.amazonaws.com", "localhost"}}, false, "amazonaws.com"},
		{"a zone in the public DNS", agenttest.DeviceOptions{RegistryHost: "ecr.box.mybank.com", PermittedDNS: []string{"box.mybank.com", "localhost"}}, false, `"box.mybank.com" lies in the public DNS (under .com)`},
		{"public IPs", agenttest.DeviceOptions{PermittedIPs: []string{"0.0.0.0/0", "::/0"}}, false, "public addresses 0.0.0.0/0"},
		{"host outside the constraints", agenttest.DeviceOptions{AnswerHost: "ecr.other.internal"}, true, "outside its CA's permitted names"},
		{"host not in the certificate", agenttest.DeviceOptions{AnswerHost: "mirror.box.internal"}, true, "not in its certificate's names"},
		{"well-known host answered", agenttest.DeviceOptions{AnswerHost: "mcr.microsoft.com"}, true, "microsoft.com"},
		{"localhost answered", agenttest.DeviceOptions{AnswerHost: "localhost"}, true, "localhost"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker", "etc/containerd"}}, device: c.dev})
			before := e.snapshot()
			_, err := e.join(e.dev.Token(agenttest.TokenOptions{}))
			if !errors.Is(err, agent.ErrUntrustedDevice) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("join = %v, want a refusal with %q", err, c.want)
			}
			if c.spent {
				if e.dev.JoinHits() != 1 || e.dev.Deletes() != 1 {
					t.Errorf("join hits %d, revokes %d: want the new client revoked", e.dev.JoinHits(), e.dev.Deletes())
				}
			} else if e.dev.JoinHits() != 0 {
				t.Errorf("the token was spent on a device refused for its CA")
			}
			e.requireSnapshot(before, "after a refused hostile device")
			if res, err := e.sys.Leave(context.Background(), agent.LeaveOptions{Report: e.report}); err != nil || len(res) != 0 {
				t.Errorf("leave after the refusal = %v, %v", res, err)
			}
		})
	}
}

// An edgecrd older than the constraints can be joined when the user says
// so; the registry host is still checked.
func TestJoinAllowUnconstrainedCA(t *testing.T) {
	e := newEnv(t, envOptions{device: agenttest.DeviceOptions{UnconstrainedCA: true}})
	res, err := e.sys.Join(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}),
		Name: "laptop", Report: e.report, AllowUnconstrainedCA: true})
	if err != nil {
		t.Fatalf("join: %v\n%s", err, e.output())
	}
	if len(res.Warnings) == 0 || !strings.Contains(strings.Join(res.Warnings, "\n"), "--allow-unconstrained-ca") {
		t.Errorf("warnings = %q", res.Warnings)
	}
	e.leave()

	h := newEnv(t, envOptions{device: agenttest.DeviceOptions{UnconstrainedCA: true, RegistryHost: "ghcr.io"}})
	_, err = h.sys.Join(context.Background(), agent.JoinOptions{URL: h.dev.URL, Token: h.dev.Token(agenttest.TokenOptions{}),
		Name: "laptop", AllowUnconstrainedCA: true})
	if !errors.Is(err, agent.ErrUntrustedDevice) {
		t.Fatalf("ghcr.io with --allow-unconstrained-ca: %v", err)
	}
}

// A device whose zone really is in the public DNS joins when the user
// names that zone (or one above it) with --allow-domain, and only then.
func TestJoinAllowDomain(t *testing.T) {
	dev := agenttest.DeviceOptions{RegistryHost: "ecr.box.corp.example.com", PermittedDNS: []string{"box.corp.example.com", "localhost"}}
	for _, c := range []struct {
		allow []string
		ok    bool
	}{
		{nil, false},
		{[]string{"other.example.com"}, false},
		{[]string{"xample.com"}, false},
		{[]string{"corp.example.com"}, true},
		{[]string{".box.corp.example.com."}, true},
	} {
		e := newEnv(t, envOptions{device: dev})
		_, err := e.sys.Join(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}),
			Name: "laptop", Report: e.report, AllowDomains: c.allow})
		if c.ok != (err == nil) {
			t.Fatalf("join --allow-domain %v = %v, want ok %v\n%s", c.allow, err, c.ok, e.output())
		}
		if err != nil && (!errors.Is(err, agent.ErrUntrustedDevice) || !strings.Contains(err.Error(), "--allow-domain box.corp.example.com")) {
			t.Fatalf("join --allow-domain %v = %v, want the flag named", c.allow, err)
		}
		if err == nil {
			e.leave()
		}
	}
}

// Another tool's credHelpers or auths entry for the registry is refused
// before the token is spent, saying what was found; --replace-credentials
// replaces it, and leave puts the helper back.
func TestJoinRefusesForeignCredentials(t *testing.T) {
	for _, c := range []struct{ name, config, want string }{
		{"credHelpers", `{"credHelpers":{"ecr.box.internal:PORT":"ecr-login"}}`, `credHelpers["ecr.box.internal:PORT"] = "ecr-login"`},
		{"auths", `{"auths":{"ecr.box.internal:PORT":{"auth":"dTpw"}}}`, `auths["ecr.box.internal:PORT"] (a docker login)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			port := strings.TrimPrefix(e.dev.Registry(), "ecr.box.internal:")
			cfg := filepath.Join(e.home, ".docker", "config.json")
			if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
				t.Fatal(err)
			}
			orig := strings.ReplaceAll(c.config, "PORT", port)
			if err := os.WriteFile(cfg, []byte(orig), 0o600); err != nil {
				t.Fatal(err)
			}
			before := e.snapshot()
			_, err := e.join(e.dev.Token(agenttest.TokenOptions{}))
			want := strings.ReplaceAll(c.want, "PORT", port)
			if !errors.Is(err, agent.ErrForeignCredentials) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--replace-credentials") {
				t.Fatalf("join = %v, want %s", err, want)
			}
			if e.dev.JoinHits() != 0 {
				t.Error("the token was spent")
			}
			e.requireSnapshot(before, "after a refused join")

			_, err = e.sys.Join(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}),
				Name: "laptop", Report: e.report, ReplaceCredentials: true})
			if err != nil {
				t.Fatalf("join --replace-credentials: %v\n%s", err, e.output())
			}
			if !strings.Contains(e.output(), "replacing "+want) {
				t.Errorf("the join did not say what it replaced:\n%s", e.output())
			}
			e.leave()
			if got := e.dockerConfig(); got != orig {
				t.Errorf("config.json after leave:\n%s\nwant\n%s", got, orig)
			}
		})
	}
}

// --dry-run says what join would refuse.
func TestPlanJoinWarnsOfHostileDevice(t *testing.T) {
	for _, c := range []struct {
		dev  agenttest.DeviceOptions
		want string
	}{
		{agenttest.DeviceOptions{UnconstrainedCA: true}, "no critical name constraints"},
		{agenttest.DeviceOptions{RegistryHost: "registry-1.docker.io"}, "docker.io"},
	} {
		e := newEnv(t, envOptions{device: c.dev})
		before := e.snapshot()
		if _, err := e.sys.PlanJoin(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: e.dev.Token(agenttest.TokenOptions{}), Report: e.report}); err != nil {
			t.Fatal(err)
		}
		if out := e.output(); !strings.Contains(out, "join would refuse before spending the token") || !strings.Contains(out, c.want) {
			t.Errorf("plan for %+v lacks the refusal %q:\n%s", c.dev, c.want, out)
		}
		e.requireSnapshot(before, "after a dry run")
	}
}
