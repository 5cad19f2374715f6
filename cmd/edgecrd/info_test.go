package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestWriteReplicas: the replica table of `edgecrd info` shows each
// replica's id, addresses, heartbeat age, liveness and health.
func TestWriteReplicas(t *testing.T) {
	var b bytes.Buffer
	writeReplicas(&b, []replicaJSON{
		{ID: "127.0.0.11", Addresses: []string{"127.0.0.11"}, HeartbeatAgeSeconds: 1, Live: true, Healthy: true},
		{ID: "127.0.0.12", Addresses: []string{"127.0.0.12", "fd00::12"}, HeartbeatAgeSeconds: 40, Problem: "probing 127.0.0.12:31001: connection refused"},
	})
	out := b.String()
	for _, want := range []string{
		"live: heartbeat within 15s",
		"127.0.0.11  127.0.0.11           1s ago     yes   ok",
		"127.0.0.12  127.0.0.12,fd00::12  40s ago    no    unreachable: probing 127.0.0.12:31001: connection refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	writeReplicas(&b, []replicaJSON{})
	if !strings.Contains(b.String(), "none registered") {
		t.Errorf("empty table: %q", b.String())
	}
}
