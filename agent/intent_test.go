package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/credhelper"
	"github.com/edgecr/edgecr/trust"
)

// crash is what the wrappers below panic with: the process dying at that
// point (the state lock is released by the deferred release, as the kernel
// would release it).
type crash struct{}

// dockerCrash dies right after the real config.json write, before the
// join could record what it did, or (early) right after it recorded its
// intent, before the write.
type dockerCrash struct {
	agent.DockerConfig
	early bool
}

func (d dockerCrash) Register(hostPort string, intent func(credhelper.Change) error) (credhelper.Change, error) {
	if _, err := d.DockerConfig.Register(hostPort, func(c credhelper.Change) error {
		if err := intent(c); err != nil {
			return err
		}
		if d.early {
			panic(crash{})
		}
		return nil
	}); err != nil {
		return credhelper.Change{}, err
	}
	panic(crash{})
}

// runtimesCrash dies right after the real runtime files are written, or
// (early) right after the intent was recorded.
type runtimesCrash struct {
	agent.Runtimes
	early bool
}

func (r runtimesCrash) InstallWithIntent(ctx context.Context, plan trust.RuntimePlan, prior *trust.RuntimeReceipt, persist func(trust.RuntimeReceipt) error) (trust.RuntimeReceipt, []string, error) {
	if _, _, err := r.Runtimes.InstallWithIntent(ctx, plan, prior, func(rc trust.RuntimeReceipt) error {
		if err := persist(rc); err != nil {
			return err
		}
		if r.early {
			panic(crash{})
		}
		return nil
	}); err != nil {
		return trust.RuntimeReceipt{}, nil, err
	}
	panic(crash{})
}

// crashJoin runs a join that must die by a crash wrapper.
func (e *env) crashJoin(token string) {
	e.t.Helper()
	defer func() {
		if r := recover(); r == nil {
			e.t.Fatal("the join did not crash")
		} else if _, ok := r.(crash); !ok {
			panic(r)
		}
	}()
	_, err := e.join(token)
	e.t.Fatalf("join returned %v", err)
}

// A join that dies right after it wrote config.json, or the runtimes'
// files, before its state says so (or after it recorded what it was about
// to write, before writing it): a rerun and leave, or leave alone, still
// give the machine back byte for byte (the files are not left behind as if
// someone else had made them).
func TestJoinCrashRightAfterAWrite(t *testing.T) {
	points := map[string]func(*agent.System){
		"docker config":        func(s *agent.System) { s.Docker = dockerCrash{DockerConfig: s.Docker} },
		"docker config intent": func(s *agent.System) { s.Docker = dockerCrash{DockerConfig: s.Docker, early: true} },
		"runtimes":             func(s *agent.System) { s.Runtimes = runtimesCrash{Runtimes: s.Runtimes} },
		"runtimes intent":      func(s *agent.System) { s.Runtimes = runtimesCrash{Runtimes: s.Runtimes, early: true} },
	}
	for name, inject := range points {
		for _, rerun := range []bool{true, false} {
			for _, config := range []string{"", "{\n\t\"auths\": {},\n\t\"x-user\": [1, 2]\n}\n"} {
				sub := name + "/leave"
				if rerun {
					sub = name + "/rerun and leave"
				}
				if config != "" {
					sub += "/existing config.json"
				}
				t.Run(sub, func(t *testing.T) {
					e := newEnv(t, envOptions{root: agenttest.RootOptions{Runtimes: []string{"etc/docker", "etc/containerd", "etc/rancher/k3s"}}})
					if config != "" {
						os.Mkdir(filepath.Join(e.home, ".docker"), 0o700)
						os.WriteFile(filepath.Join(e.home, ".docker/config.json"), []byte(config), 0o600)
					}
					before := e.snapshot()
					token := e.dev.Token(agenttest.TokenOptions{})
					docker, runtimes := e.sys.Docker, e.sys.Runtimes
					inject(e.sys)
					e.crashJoin(token)
					e.sys.Docker, e.sys.Runtimes = docker, runtimes
					if rerun {
						res := e.mustJoin(token)
						if !res.AlreadyJoined {
							t.Errorf("rerun = %s", toJSON(t, res))
						}
						e.requireOneOfEach()
					}
					e.leave()
					e.requireSnapshot(before, "after the crash and leave")
				})
			}
		}
	}
}

// config.json rewritten by another program between the crash and leave
// (docker login re-encodes it): the entry the crashed join wrote is still
// known as its own and removed; the rest stays.
func TestLeaveAfterCrashAndAnEditedDockerConfig(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.sys.Docker = dockerCrash{DockerConfig: e.sys.Docker}
	docker := e.sys.Docker.(dockerCrash).DockerConfig
	e.crashJoin(e.dev.Token(agenttest.TokenOptions{}))
	e.sys.Docker = docker
	cfg := filepath.Join(e.home, ".docker/config.json")
	edited := `{"auths":{"other.example":{}},"credHelpers":{"` + e.dev.Registry() + `":"edgecr"}}`
	if err := os.WriteFile(cfg, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	e.leave()
	if got, want := e.dockerConfig(), `{"auths":{"other.example":{}}}`; got != want {
		t.Errorf("config.json after leave = %s, want %s", got, want)
	}
}
