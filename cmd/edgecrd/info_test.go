package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
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

// TestInfoListsReplicas: `edgecrd info --storage` lists the replicas
// registered in the bucket with their heartbeat age, liveness and a health
// probe (here: nothing answers at their addresses).
func TestInfoListsReplicas(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	url := "s3://" + m.CreateBucket(t) + "/site?endpoint=" + m.Endpoint
	if code, _, errOut := edgecrd(t, "init", "--storage", url, "--name", "edge1", "--ip", "127.0.0.11"); code != 0 {
		t.Fatalf("init --storage: %s", errOut)
	}
	loc, err := kv.ParseS3URL(url)
	if err != nil {
		t.Fatal(err)
	}
	store, err := kv.NewS3(loc.KVConfig())
	if err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on, on both addresses.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	now := time.Now().UTC()
	for _, r := range []server.Replica{
		{ID: "127.0.0.11", IPs: []string{"127.0.0.11"}, Port: port, Instance: "a", Started: now.Add(-time.Hour), Heartbeat: now},
		{ID: "127.0.0.12", IPs: []string{"127.0.0.12"}, Port: port, Instance: "b", Started: now.Add(-time.Hour), Heartbeat: now.Add(-time.Minute)},
	} {
		b, _ := json.Marshal(r)
		if _, err := store.Put(context.Background(), "replicas/"+r.ID, b, ""); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := edgecrd(t, "info", "--storage", url, "-o", "json")
	if code != 0 {
		t.Fatalf("info --storage -o json: %s", errOut)
	}
	var info infoJSON
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Replicas) != 2 {
		t.Fatalf("replicas = %+v", info.Replicas)
	}
	a, b := info.Replicas[0], info.Replicas[1]
	if a.ID != "127.0.0.11" || !a.Live || a.Healthy || !strings.Contains(a.Problem, "127.0.0.11") {
		t.Errorf("first replica: %+v", a)
	}
	if b.ID != "127.0.0.12" || b.Live || b.HeartbeatAgeSeconds < 59 {
		t.Errorf("second replica: %+v", b)
	}
	code, out, errOut = edgecrd(t, "info", "--storage", url)
	if code != 0 || !strings.Contains(out, "Replicas (live: heartbeat within 15s):") || !strings.Contains(out, "127.0.0.12  127.0.0.12") {
		t.Errorf("info --storage: %d\n%s\n%s", code, out, errOut)
	}
	// On a data dir there is no replica section.
	dir := t.TempDir()
	if code, _, errOut := edgecrd(t, "init", "--data-dir", dir, "--name", "edge2", "--ip", "198.18.0.31"); code != 0 {
		t.Fatal(errOut)
	}
	if _, out, _ := edgecrd(t, "info", "--data-dir", dir, "-o", "json"); strings.Contains(out, "replicas") {
		t.Errorf("info on a data dir lists replicas:\n%s", out)
	}
}
