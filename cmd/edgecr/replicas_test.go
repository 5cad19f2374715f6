package main

import (
	"strings"
	"testing"

	"github.com/edgecr/edgecr/agent/agenttest"
)

// TestStatusReplicaDown (issue 12): `edgecr status` against a device with
// two replicas, one down, exits 0 and prints a warning naming the one that
// does not answer; leave removes both hosts lines.
func TestStatusReplicaDown(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	c.dev = agenttest.NewDevice(t, agenttest.DeviceOptions{Replicas: []string{"127.0.0.11", "127.0.0.12"}})
	before := c.snapshot()
	code, out, errOut := c.run("join", c.dev.URL, "--token", c.dev.Token(agenttest.TokenOptions{}), "--root", c.root)
	if code != 0 {
		t.Fatalf("join exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "✓ hosts: added 127.0.0.11, 127.0.0.12 ecr.box.internal") {
		t.Errorf("join output:\n%s", out)
	}
	c.dev.StopReplica("127.0.0.12")
	code, out, errOut = c.run("status", "--root", c.root)
	if code != 0 {
		t.Fatalf("status with one replica down: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "warning: replicas that do not answer: 127.0.0.12:") || !strings.Contains(out, "1 of 2 replicas") {
		t.Errorf("status output:\n%s", out)
	}
	if code, out, errOut = c.run("leave", "--root", c.root); code != 0 {
		t.Fatalf("leave exit %d\n%s\n%s", code, out, errOut)
	}
	c.requireSnapshot(before, "after join, status and leave")
}
