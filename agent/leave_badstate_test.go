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
)

// A state that holds a host the hosts file could never have been given (a
// hand-edited file, or one an older edgecr wrote from a hostile device's
// answer) does not wedge leave: nothing of edgecr's can be in the hosts
// file under that name, so leave drops the record, says so, and converges.
func TestLeaveConvergesOnAnInvalidHost(t *testing.T) {
	for _, host := range []string{"bad host", "ecr..box.internal", "ecr.box.internal\x1b[2J", "-x.internal", ""} {
		for _, added := range []bool{false, true} {
			t.Run(strings.ReplaceAll(host, "\x1b", "ESC"), func(t *testing.T) {
				e := newEnv(t, envOptions{})
				hosts := filepath.Join(e.root, "etc", "hosts")
				hostsBefore := e.read("etc/hosts")
				st := map[string]any{"version": 1, "registries": []any{map[string]any{
					"registry": host + ":31001", "host": host, "port": 31001, "ip": "127.0.0.1",
					"deviceURL": e.dev.URL, "pin": e.dev.Pin, "clientID": "c-1", "username": "c-1",
					"steps": []string{"bootstrap"},
					"hosts": map[string]any{"path": hosts, "host": host, "ip": "127.0.0.1", "added": added},
				}}}
				b, _ := json.Marshal(st)
				p := e.sys.State.Path()
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				res, err := e.sys.Leave(context.Background(), agent.LeaveOptions{Report: e.report})
				if err != nil || len(res) != 1 || !res[0].Done {
					t.Fatalf("leave = %+v, %v\n%s", res, err, e.output())
				}
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("state file left: %v", err)
				}
				if got := e.read("etc/hosts"); got != hostsBefore {
					t.Errorf("hosts file changed:\n%s", got)
				}
				if !strings.Contains(e.output(), "not a valid host name") {
					t.Errorf("leave did not say why it dropped the record:\n%s", e.output())
				}
				if strings.Contains(e.output(), "\x1b") {
					t.Errorf("leave printed the raw escape:\n%q", e.output())
				}
				// And again: nothing joined, nothing to do.
				if res, err := e.sys.Leave(context.Background(), agent.LeaveOptions{}); err != nil || len(res) != 0 {
					t.Errorf("second leave = %+v, %v", res, err)
				}
			})
		}
	}
}

// A hostile device that answers an invalid registry host: the join fails,
// nothing is recorded, the client it made is revoked, and leave exits 0.
func TestJoinInvalidRegistryHostRecordsNothing(t *testing.T) {
	for _, host := range []string{"bad host", "ecr..box.internal", "ecr.box.internal\x1b]0;pwned\x07", "x.box.internal\n127.0.0.1 github.com"} {
		t.Run(strings.ReplaceAll(host, "\x1b", "ESC"), func(t *testing.T) {
			e := newEnv(t, envOptions{device: agenttest.DeviceOptions{AnswerHost: host}})
			before := e.snapshot()
			_, err := e.join(e.dev.Token(agenttest.TokenOptions{}))
			if err == nil || !strings.Contains(err.Error(), "invalid host name") {
				t.Fatalf("join = %v", err)
			}
			if strings.ContainsAny(err.Error(), "\x1b\x07\n") {
				t.Errorf("the error carries the device's control characters: %q", err)
			}
			if e.dev.Deletes() != 1 {
				t.Error("the client the device made was not revoked")
			}
			e.requireSnapshot(before, "after an invalid registry host")
			if res, err := e.sys.Leave(context.Background(), agent.LeaveOptions{}); err != nil || len(res) != 0 {
				t.Errorf("leave = %+v, %v", res, err)
			}
		})
	}
}
