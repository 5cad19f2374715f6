package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/hostsfile"
	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
)

// cli is one client machine (temp root and home) driven through the
// command line, against a fake device.
type cli struct {
	t      *testing.T
	dev    *agenttest.Device
	root   string
	home   string
	runner trust.Runner
	env    map[string]string
	euid   int
	helper *agenttest.Helper
	crashs int
}

func newCLI(t *testing.T, ro agenttest.RootOptions) *cli {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the Debian fixture root uses symbolic links and unix paths")
	}
	c := &cli{t: t, dev: agenttest.NewDevice(t, agenttest.DeviceOptions{}), home: t.TempDir(), euid: 0}
	c.root, c.runner = agenttest.DebianRoot(t, ro)
	c.env = map[string]string{"HOME": c.home, "DOCKER_CONFIG": filepath.Join(c.home, ".docker")}
	return c
}

func (c *cli) factory(stdin string) (*Factory, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	f := newFactory(IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	f.GOOS = "linux"
	f.Getenv = func(k string) string { return c.env[k] }
	f.Environ = func() []string { return nil }
	f.Geteuid = func() int { return c.euid }
	f.LookupUser = func(string) (*user.User, error) { return nil, errors.New("no users here") }
	f.HomeDir = func() (string, error) { return c.home, nil }
	f.Hostname = func() (string, error) { return "test-laptop", nil }
	f.LookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	f.Runner = c.runner
	f.Crash = func() { c.crashs++ }
	real := f.System
	f.System = func(root string, log *slog.Logger) (*agent.System, error) {
		s, err := real(root, log)
		if err != nil {
			return nil, err
		}
		if c.helper == nil {
			c.helper = &agenttest.Helper{}
		}
		c.helper.Sys = s
		s.Helper = c.helper
		return s, nil
	}
	return f, &out, &errOut
}

func (c *cli) run(args ...string) (code int, stdout, stderr string) {
	return c.runIn("", args...)
}

func (c *cli) runIn(stdin string, args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	f, out, errOut := c.factory(stdin)
	code = run(context.Background(), args, f)
	return code, out.String(), errOut.String()
}

func (c *cli) snapshot() map[string]string {
	s := trusttest.Snapshot(c.t, c.root)
	delete(s, "etc/hosts.edgecr.lock") // hostsfile keeps its lock file
	for k, v := range trusttest.Snapshot(c.t, c.home) {
		s["~/"+k] = v
	}
	return s
}

func (c *cli) requireSnapshot(before map[string]string, when string) {
	c.t.Helper()
	if diff := trusttest.DiffSnapshots(before, c.snapshot()); diff != "" {
		c.t.Errorf("%s: the client changed:\n%s", when, diff)
	}
}

func (c *cli) requireNoSecret(token string, texts ...string) {
	c.t.Helper()
	secrets := []string{agenttest.Secret(token)}
	for _, cl := range c.dev.Clients() {
		secrets = append(secrets, cl.Password)
	}
	for _, s := range secrets {
		for _, text := range texts {
			if strings.Contains(text, s) {
				c.t.Errorf("output shows a secret:\n%s", text)
			}
		}
	}
}

func TestJoinStatusLeave(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{Runtimes: []string{"etc/docker"}})
	before := c.snapshot()
	token := c.dev.Token(agenttest.TokenOptions{})
	reg := c.dev.Registry()

	code, out, errOut := c.run("join", c.dev.URL, "--token", token, "--root", c.root)
	if code != 0 {
		t.Fatalf("join exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"✓ bootstrap: joined " + reg,
		"✓ hosts: added 127.0.0.1 ecr.box.internal to " + filepath.Join(c.root, "etc/hosts"),
		"✓ trust store: installed the CA",
		"✓ docker: configured",
		"✓ credential: stored",
		"✓ docker config: set credHelpers",
		"✓ verify: GET https://" + reg + "/v2/",
		"Joined " + reg + " as c-",
		"docker pull " + reg + "/<repository>:<tag>",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("join output lacks %q:\n%s", want, out)
		}
	}
	if cl := c.dev.Clients(); len(cl) != 1 {
		t.Errorf("clients: %v", cl)
	} else {
		for _, x := range cl {
			if x.Name != "test-laptop" {
				t.Errorf("client name = %q, want the host name", x.Name)
			}
		}
	}

	code, out, errOut = c.run("status", "--root", c.root)
	if code != 0 || !strings.Contains(out, reg+" (c-") || !strings.Contains(out, ": ok\n") || strings.Contains(out, "✗") {
		t.Errorf("status exit %d\n%s\n%s", code, out, errOut)
	}

	code, out, _ = c.run("status", "--root", c.root, "-o", "json")
	var rs []struct {
		Registry string `json:"registry"`
		Checks   []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
			Fix    string `json:"fix"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &rs); err != nil || code != 0 || len(rs) != 1 || rs[0].Registry != reg || len(rs[0].Checks) < 8 {
		t.Errorf("status -o json: exit %d, %v\n%s", code, err, out)
	}

	// Break a hop: status says which and how to fix it, and exits 1.
	if _, err := hostsfile.NewFile(filepath.Join(c.root, "etc/hosts")).Remove(context.Background(), "ecr.box.internal"); err != nil {
		t.Fatal(err)
	}
	code, out, _ = c.run("status", "--root", c.root)
	if code != 1 || !strings.Contains(out, ": BROKEN") || !strings.Contains(out, "✗ hosts entry: ") || !strings.Contains(out, "fix: run `edgecr join "+c.dev.URL) {
		t.Errorf("status with the hosts entry gone: exit %d\n%s", code, out)
	}
	// Rejoining repairs it without spending the (single-use, spent) token.
	code, out, errOut = c.run("join", c.dev.URL, "--token", token, "--root", c.root)
	if code != 0 || !strings.Contains(out, "already joined as") || !strings.Contains(out, "✓ hosts: added") || c.dev.JoinHits() != 1 {
		t.Errorf("rejoin exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ = c.run("status", "--root", c.root); code != 0 {
		t.Errorf("status after the rejoin: exit %d\n%s", code, out)
	}

	code, out, errOut = c.run("leave", "--root", c.root)
	if code != 0 || !strings.Contains(out, "✓ device: revoked") || !strings.Contains(out, "Left "+reg+".") {
		t.Errorf("leave exit %d\n%s\n%s", code, out, errOut)
	}
	if c.dev.Deletes() != 1 {
		t.Errorf("deletes = %d", c.dev.Deletes())
	}
	c.requireSnapshot(before, "after join, status, rejoin and leave")

	code, out, _ = c.run("leave", "--root", c.root)
	if code != 0 || !strings.Contains(out, "Not joined to any registry") {
		t.Errorf("second leave: exit %d\n%s", code, out)
	}
	code, out, errOut = c.run("status", "--root", c.root)
	if code != 1 || !strings.Contains(errOut, "not joined to any registry") {
		t.Errorf("status when not joined: exit %d\n%s\n%s", code, out, errOut)
	}
	c.requireSnapshot(before, "after leave, leave and status")
}

func TestJoinJSONHoldsNoSecret(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	token := c.dev.Token(agenttest.TokenOptions{})
	code, out, errOut := c.run("join", c.dev.URL, "--token", token, "--root", c.root, "-o", "json", "--verbose")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"registry", "clientID", "username", "role", "events", "caFingerprint"} {
		if _, ok := res[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out)
		}
	}
	if _, ok := res["password"]; ok {
		t.Errorf("JSON has a password: %s", out)
	}
	if !strings.Contains(errOut, "✓ bootstrap") {
		t.Errorf("progress not on stderr:\n%s", errOut)
	}
	_, lout, lerr := c.run("leave", "--root", c.root, "-o", "json", "-v")
	_, sout, serr := c.run("status", "--root", c.root, "-o", "json")
	state, _ := os.ReadFile(filepath.Join(c.root, "var/lib/edgecr/state.json"))
	c.requireNoSecret(token, out, errOut, lout, lerr, sout, serr, string(state))
}

func TestJoinPinMismatch(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	before := c.snapshot()
	_, otherPin := agenttest.NewCAPEM(t)
	token := c.dev.Token(agenttest.TokenOptions{Pin: otherPin})
	code, out, errOut := c.run("join", c.dev.URL, "--token", token, "--root", c.root)
	if code != 1 || !strings.Contains(errOut, "edgecr: CA pin mismatch: got sha256:"+c.dev.Pin+", want sha256:"+otherPin) ||
		!strings.Contains(errOut, "Nothing was sent and nothing was changed") {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
	if c.dev.JoinHits() != 0 {
		t.Error("the join endpoint was hit")
	}
	c.requireSnapshot(before, "after a refused join")
	c.requireNoSecret(token, out, errOut)
}

func TestJoinTokenErrorsSayWhatToDo(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	tests := []struct{ token, want string }{
		{c.dev.Token(agenttest.TokenOptions{Expired: true}), "has expired (the token expired)\nCreate a new token on the device: edgecrd token create"},
		{"edgecr1.abc", "invalid join token: 2 dot-separated parts"},
	}
	for _, tt := range tests {
		code, out, errOut := c.run("join", c.dev.URL, "--token", tt.token, "--root", c.root)
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("exit %d, stderr:\n%s\nwant %q", code, errOut, tt.want)
		}
		if strings.Contains(errOut+out, "abc") && tt.token == "edgecr1.abc" {
			t.Errorf("the token is echoed: %s", errOut)
		}
	}
}

func TestTokenFromStdin(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	token := c.dev.Token(agenttest.TokenOptions{})
	code, out, errOut := c.runIn(token+"\n", "join", c.dev.URL, "--token", "-", "--root", c.root, "--name", "ci")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, cl := range c.dev.Clients() {
		if cl.Name != "ci" {
			t.Errorf("name = %q", cl.Name)
		}
	}
}

func TestDryRun(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{Runtimes: []string{"etc/docker"}})
	before := c.snapshot()
	token := c.dev.Token(agenttest.TokenOptions{})
	code, out, errOut := c.run("join", c.dev.URL, "--token", token, "--root", c.root, "--dry-run")
	if code != 0 || !strings.Contains(out, "Dry run: nothing is changed") || !strings.Contains(out, "• hosts: add 127.0.0.1 ecr.box.internal") ||
		!strings.Contains(out, "• trust store: run update-ca-certificates") || !strings.Contains(out, "Run without --dry-run") {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = c.run("join", c.dev.URL, "--token", token, "--root", c.root, "--dry-run", "-o", "json")
	var plan agent.PlanResult
	if err := json.Unmarshal([]byte(out), &plan); err != nil || code != 0 || !plan.DryRun || plan.Registry != c.dev.Registry() {
		t.Errorf("dry run JSON: exit %d, %v\n%s", code, err, out)
	}
	if c.dev.JoinHits() != 0 {
		t.Error("the token was spent")
	}
	c.requireSnapshot(before, "after dry runs")
	// A non-root user may dry-run the live system.
	c.euid = 1000
	if code, out, errOut := c.run("join", c.dev.URL, "--token", token, "--dry-run", "-o", "json"); code != 0 {
		t.Errorf("non-root dry run: exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestLiveChangesNeedRoot(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	c.euid = 1000
	token := c.dev.Token(agenttest.TokenOptions{})
	for _, args := range [][]string{{"join", c.dev.URL, "--token", token}, {"leave"}} {
		code, _, errOut := c.run(args...)
		if code != 1 || !strings.Contains(errOut, "run it as root (sudo edgecr "+args[0]) {
			t.Errorf("%v: exit %d\n%s", args, code, errOut)
		}
	}
	if c.dev.JoinHits() != 0 || len(c.dev.Requests()) != 0 {
		t.Errorf("the device was contacted: %v", c.dev.Requests())
	}
}

// Issue 17, defect 2: on Windows, join and leave without an elevated token
// stop before the token is spent or the device is contacted, and say how to
// elevate (needRoot skipped Windows: the hosts write failed after the
// bootstrap, and the rollback revoked the new client).
func TestWindowsNeedsElevation(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	token := c.dev.Token(agenttest.TokenOptions{})
	for _, args := range [][]string{{"join", c.dev.URL, "--token", token}, {"leave"}} {
		f, _, errOut := c.factory("")
		f.GOOS = "windows"
		f.Elevated = func() bool { return false }
		built := false
		f.System = func(string, *slog.Logger) (*agent.System, error) {
			built = true
			return nil, errors.New("the system must not be opened")
		}
		code := run(context.Background(), args, f)
		if code != 1 || !strings.Contains(errOut.String(), "Run as administrator") || built {
			t.Errorf("%v: exit %d, system opened %v\n%s", args, code, built, errOut)
		}
	}
	if c.dev.JoinHits() != 0 || len(c.dev.Requests()) != 0 {
		t.Errorf("the device was contacted: %v", c.dev.Requests())
	}
}

// Issue 17 risk: Windows has no SUDO_USER; an elevation with another
// administrator's account is said before anything is done, and not said
// when the accounts match (or under --root).
func TestWindowsOtherAccountWarning(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	for _, tc := range []struct {
		current, desktop string
		root             bool
		warn             bool
	}{
		{`BOX\admin`, `BOX\ann`, false, true},
		{`BOX\ann`, `box\ANN`, false, false},
		{`BOX\admin`, ``, false, false}, // no desktop (SSH)
		{`BOX\admin`, `BOX\ann`, true, false},
	} {
		f, _, errOut := c.factory("")
		f.GOOS = "windows"
		f.Elevated = func() bool { return true }
		f.DesktopUsers = func() (string, string, error) { return tc.current, tc.desktop, nil }
		f.System = func(string, *slog.Logger) (*agent.System, error) { return nil, errors.New("stop here") }
		args := []string{"join", c.dev.URL, "--token", c.dev.Token(agenttest.TokenOptions{})}
		if tc.root {
			args = append(args, "--root", t.TempDir())
		}
		run(context.Background(), args, f)
		got := strings.Contains(errOut.String(), "is logged in at this desktop")
		if got != tc.warn {
			t.Errorf("%s at %s's desktop (root %v): warned %v\n%s", tc.current, tc.desktop, tc.root, got, errOut)
		}
		if tc.warn && !strings.Contains(errOut.String(), `go into BOX\admin's profile`) {
			t.Errorf("the warning does not say whose profile:\n%s", errOut)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	for _, args := range [][]string{
		{"join"},
		{"join", "a", "b", "--token", "x"},
		{"join", c.dev.URL},
		{"join", c.dev.URL, "--token", "x", "-o", "yaml"},
		{"status", "extra"},
		{"status", "--nope"},
		{"leave", "a", "b"},
	} {
		if code, _, errOut := c.run(args...); code != 2 || !strings.HasPrefix(errOut, "edgecr: ") {
			t.Errorf("%v: exit %d, stderr %q; want 2", args, code, errOut)
		}
	}
	c.env[crashEnv] = "nowhere"
	if code, _, errOut := c.run("join", c.dev.URL, "--token", c.dev.Token(agenttest.TokenOptions{}), "--root", c.root); code != 2 || !strings.Contains(errOut, "is not a join step") {
		t.Errorf("bad %s: exit %d %s", crashEnv, code, errOut)
	}
}

// EDGECR_TEST_CRASH_AFTER=<step> kills the process right after the step's
// state is saved (here Crash only counts, so the join stops as if killed);
// the rerun converges and leave restores.
func TestCrashHook(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{Runtimes: []string{"etc/docker"}})
	before := c.snapshot()
	token := c.dev.Token(agenttest.TokenOptions{})
	c.env[crashEnv] = agent.StepTrust
	code, _, errOut := c.run("join", c.dev.URL, "--token", token, "--root", c.root)
	if code != 1 || c.crashs != 1 || !strings.Contains(errOut, "the process was not killed") {
		t.Fatalf("exit %d, crashes %d\n%s", code, c.crashs, errOut)
	}
	state, err := os.ReadFile(filepath.Join(c.root, "var/lib/edgecr/state.json"))
	if err != nil || !strings.Contains(string(state), `"steps": [
        "bootstrap",
        "hosts",
        "trust"
      ]`) {
		t.Errorf("state after the crash (%v):\n%s", err, state)
	}
	delete(c.env, crashEnv)
	if code, out, errOut := c.run("join", c.dev.URL, "--token", token, "--root", c.root); code != 0 || !strings.Contains(out, "already joined") {
		t.Errorf("rerun: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ := c.run("leave", "--root", c.root); code != 0 {
		t.Errorf("leave: exit %d\n%s", code, out)
	}
	c.requireSnapshot(before, "after crash, rerun and leave")
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	f := newFactory(IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out})
	if code := run(context.Background(), []string{"version"}, f); code != 0 || !strings.HasPrefix(out.String(), "edgecr ") {
		t.Errorf("version: %d %q", code, out.String())
	}
}

// The join command's flags land in its options (GitHub CLI style).
func TestNewCmdJoinParsesFlags(t *testing.T) {
	f := newFactory(IOStreams{In: strings.NewReader(""), Out: new(bytes.Buffer), ErrOut: new(bytes.Buffer)})
	f.Hostname = func() (string, error) { return "h", nil }
	var got *JoinOptions
	cmd := NewCmdJoin(f, &globalFlags{}, func(_ context.Context, o *JoinOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"https://198.18.0.2:31001", "--token", "t", "--root", "/r", "--dry-run", "-o", "json", "--browsers"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.URL != "https://198.18.0.2:31001" || got.Token != "t" || got.Root != "/r" || !got.DryRun || got.Output != "json" || got.Name != "h" || !got.Browsers {
		t.Errorf("options = %+v", got)
	}
	if got.MirrorPort != 31002 || len(got.Mirrors) != 0 {
		t.Errorf("mirror defaults: %v %d", got.Mirrors, got.MirrorPort)
	}
	cmd = NewCmdJoin(f, &globalFlags{}, func(_ context.Context, o *JoinOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"https://198.18.0.2:31001", "--token", "t", "--mirror", "docker.io", "--mirror", "quay.io", "--mirror-port", "5000"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Mirrors, ",") != "docker.io,quay.io" || got.MirrorPort != 5000 {
		t.Errorf("--mirror: %v %d", got.Mirrors, got.MirrorPort)
	}
	for _, bad := range [][]string{{"--mirror", "docker.io/library"}, {"--mirror", ""}, {"--mirror-port", "0"}} {
		cmd = NewCmdJoin(f, &globalFlags{}, func(_ context.Context, o *JoinOptions) error { return nil })
		cmd.SetArgs(append([]string{"https://198.18.0.2:31001", "--token", "t"}, bad...))
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		if err := cmd.Execute(); err == nil {
			t.Errorf("join %v: no error", bad)
		}
	}
}

// A join URL with a port nothing listens on says so, with where to read
// the right one, instead of a bare "connection refused".
func TestJoinWrongPortSaysNothingListens(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, _, errOut := c.run("join", "https://"+addr, "--token", c.dev.Token(agenttest.TokenOptions{}), "--root", c.root)
	if code != 1 || !strings.Contains(errOut, "Nothing listens at "+addr) || !strings.Contains(errOut, "`edgecrd info` prints its endpoint") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
}

// Under sudo, certutil changes the user's browser databases as the user;
// otherwise it runs as the caller, like every other command.
func TestBrowsersRunAsTheSudoUser(t *testing.T) {
	f := newFactory(IOStreams{In: strings.NewReader(""), Out: new(bytes.Buffer), ErrOut: new(bytes.Buffer)})
	f.GOOS = "linux"
	env := map[string]string{"SUDO_USER": "alice", "SUDO_UID": "1000", "SUDO_GID": "1001"}
	f.Getenv = func(k string) string { return env[k] }
	f.Geteuid = func() int { return 0 }
	f.LookupUser = func(string) (*user.User, error) { return &user.User{Username: "alice", HomeDir: "/home/alice"}, nil }
	sys, err := f.System("", nil)
	if err != nil {
		t.Fatal(err)
	}
	nss, ok := sys.Browsers.(*trust.NSS)
	if !ok || nss.Home != "/home/alice" || nss.Run != (trust.ExecAsUser{UID: 1000, GID: 1001}) {
		t.Errorf("under sudo: %#v", sys.Browsers)
	}
	env = map[string]string{}
	f.HomeDir = func() (string, error) { return "/root", nil }
	sys, err = f.System("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if nss := sys.Browsers.(*trust.NSS); nss.Run != (trust.ExecRunner{}) || nss.Home != "/root" {
		t.Errorf("as root: %#v", nss)
	}
}
