package server

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

func TestShardNumber(t *testing.T) {
	for n := range shardCount {
		if got, ok := shardNumber(shardKey(n)); !ok || got != n {
			t.Errorf("shardNumber(%s) = %d, %v", shardKey(n), got, ok)
		}
	}
	for _, k := range []string{"identities/changes.json", "identities/0.json", "identities/100.json", "identities/ff.json.bak", "identities/FF.json", "identities/+f.json", "tokens/ff.json", "identities/zz.json"} {
		if n, ok := shardNumber(k); ok {
			t.Errorf("shardNumber(%s) = %d, true; want false", k, n)
		}
	}
}

// TestIdentityCacheOnBucket: on a bucket, a second Clients or Tokens read
// costs a LIST per prefix and a GET of each key that changed, and still
// sees every change another process made: a join, a revocation, a token
// created or removed. What a caller does to the answer does not change
// the cache.
func TestIdentityCacheOnBucket(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	bucket := m.CreateBucket(t)
	counter := &kvtest.Counter{}
	open := func(c *kvtest.Counter) kv.Store {
		cfg := kv.S3Config{Bucket: bucket, KeyPrefix: "site/edgecr/state/", Endpoint: m.Endpoint, Region: m.Region}
		if c != nil {
			cfg.HTTPClient = &http.Client{Transport: c}
		}
		s, err := kv.NewS3(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	other := replicaState(t, open(nil)) // another process: edgecrd join, revoke, token create
	reader := replicaState(t, open(counter))
	now := time.Now().UTC()
	add := func(from, to int) {
		t.Helper()
		err := other.Identities().Update(false, func(r *Records) error {
			for i := from; i < to; i++ {
				r.Identities = append(r.Identities, &Identity{ID: fmt.Sprintf("c-%016x", i), Name: fmt.Sprintf("node-%d", i), Kind: "client", Role: RolePull, SecretHash: HashSecret("x"), Created: now})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	clients := func() map[string]ClientInfo {
		t.Helper()
		cl, err := reader.Clients()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]ClientInfo{}
		for _, c := range cl {
			out[c.ID] = c
		}
		return out
	}
	add(0, 40)
	if got := clients(); len(got) != 40 {
		t.Fatalf("first read: %d clients, want 40", len(got))
	}
	counter.Take()
	if got := clients(); len(got) != 40 {
		t.Fatalf("second read: %d clients, want 40", len(got))
	}
	// identities.json (the layout), the LISTs of identities/ and tokens/,
	// last-seen.
	if got := counter.Take(); total(got) > 4 {
		t.Errorf("an unchanged second read made %s; want 4 requests (layout, 2 LISTs, last seen)", kvtest.Format(got))
	}

	add(40, 41)
	if err := other.RevokeClient("c-0000000000000003", now); err != nil {
		t.Fatal(err)
	}
	counter.Take()
	got := clients()
	if len(got) != 41 || got["c-0000000000000028"].Name != "node-40" || !got["c-0000000000000003"].Revoked || got["c-0000000000000004"].Revoked {
		t.Fatalf("after a join and a revocation by another process: %d clients, new one %+v, revoked %v", len(got), got["c-0000000000000028"], got["c-0000000000000003"].Revoked)
	}
	if n := total(counter.Take()); n > 4+2 {
		t.Errorf("after two changed shards the read made %d requests, want at most 6", n)
	}

	// The answer is the caller's.
	recs, err := reader.Identities().Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range recs.Identities {
		i.Name = "changed"
	}
	if got := clients(); got["c-0000000000000001"].Name != "node-1" {
		t.Fatalf("changing a read's answer changed the cache: %+v", got["c-0000000000000001"])
	}

	tk, _, err := other.CreateToken(TokenOptions{TTL: time.Hour, Uses: 2, Role: RolePull}, now)
	if err != nil {
		t.Fatal(err)
	}
	if tks, err := reader.Tokens(); err != nil || len(tks) != 1 || tks[0].ID != tk.ID {
		t.Fatalf("tokens after another process created one: %v, %v", tks, err)
	}
	if err := other.RemoveToken(tk.ID); err != nil {
		t.Fatal(err)
	}
	if tks, err := reader.Tokens(); err != nil || len(tks) != 0 {
		t.Fatalf("tokens after another process removed it: %v, %v", tks, err)
	}
}

func total(counts map[string]int) int {
	n := 0
	for _, v := range counts {
		n += v
	}
	return n
}
