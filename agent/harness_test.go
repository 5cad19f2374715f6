package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
)

// env is one client machine (a temp root, a temp home) and its device.
type env struct {
	t      *testing.T
	dev    *agenttest.Device
	root   string
	home   string
	runner trust.Runner
	sys    *agent.System
	helper *agenttest.Helper

	retry agent.RetryPolicy // of e.join; zero is the default

	mu  sync.Mutex
	out bytes.Buffer // every event, rendered
}

type envOptions struct {
	root   agenttest.RootOptions
	device agenttest.DeviceOptions
	dev    *agenttest.Device // share a device between clients
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the Debian fixture root uses symbolic links and unix paths")
	}
	e := &env{t: t, dev: o.dev}
	if e.dev == nil {
		e.dev = agenttest.NewDevice(t, o.device)
	}
	e.root, e.runner = agenttest.DebianRoot(t, o.root)
	e.home = t.TempDir()
	vars := map[string]string{
		"HOME":          e.home,
		"DOCKER_CONFIG": filepath.Join(e.home, ".docker"),
		"PATH":          "/nonexistent",
	}
	e.sys = agent.NewSystem(agent.SystemConfig{
		GOOS:     "linux",
		Root:     e.root,
		User:     agent.User{Name: "tester", Home: e.home, UID: -1, GID: -1},
		Getenv:   func(k string) string { return vars[k] },
		LookPath: func(string) (string, error) { return "", exec.ErrNotFound },
		Runner:   e.runner,
	})
	e.helper = &agenttest.Helper{Sys: e.sys}
	e.sys.Helper = e.helper
	return e
}

func (e *env) report(ev agent.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.out.WriteString(ev.String() + "\n")
}

func (e *env) output() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.out.String()
}

func (e *env) join(token string) (*agent.JoinResult, error) {
	e.t.Helper()
	return e.sys.Join(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: token, Name: "laptop", Report: e.report, Retry: e.retry})
}

func (e *env) mustJoin(token string) *agent.JoinResult {
	e.t.Helper()
	res, err := e.join(token)
	if err != nil {
		e.t.Fatalf("join: %v\noutput:\n%s", err, e.output())
	}
	return res
}

func (e *env) leave() []agent.LeaveResult {
	e.t.Helper()
	res, err := e.sys.Leave(context.Background(), agent.LeaveOptions{Report: e.report})
	if err != nil {
		e.t.Fatalf("leave: %v\noutput:\n%s", err, e.output())
	}
	return res
}

// snapshot covers everything the client owns: the root and the home. The
// hosts file's lock file is left out: hostsfile keeps it once made (removing
// a lock file others may be waiting on would break the lock), and it holds
// nothing.
func (e *env) snapshot() map[string]string {
	s := trusttest.Snapshot(e.t, e.root)
	delete(s, "etc/hosts.edgecr.lock")
	for k, v := range trusttest.Snapshot(e.t, e.home) {
		s["~/"+k] = v
	}
	return s
}

func (e *env) requireSnapshot(before map[string]string, when string) {
	e.t.Helper()
	if diff := trusttest.DiffSnapshots(before, e.snapshot()); diff != "" {
		e.t.Errorf("%s: the client changed:\n%s\noutput:\n%s", when, diff, e.output())
	}
}

func (e *env) read(rel string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, rel))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *env) dockerConfig() string {
	b, _ := os.ReadFile(filepath.Join(e.home, ".docker", "config.json"))
	return string(b)
}

func (e *env) state() *agent.State {
	e.t.Helper()
	st, err := e.sys.State.Load()
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// requireNoSecret fails if any text holds the token secret or a password
// the device issued.
func (e *env) requireNoSecret(token string, texts ...string) {
	e.t.Helper()
	secrets := []string{agenttest.Secret(token)}
	for _, c := range e.dev.Clients() {
		secrets = append(secrets, c.Password)
	}
	for _, s := range secrets {
		for i, text := range append(texts, e.output()) {
			if strings.Contains(text, s) {
				e.t.Errorf("text %d shows a secret:\n%s", i, text)
			}
		}
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func count(s, sub string) int { return strings.Count(s, sub) }
