package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
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

// versionsOf is a kv.Store whose ListVersions names every key with a
// fixed version, for LoadIdentityCache's fuzz target.
type versionsOf struct {
	kv.Store
	ver kv.Version
}

func (v versionsOf) ListVersions(ctx context.Context, prefix, after string, limit int) ([]kv.KeyVersion, error) {
	keys, err := v.List(ctx, prefix, after, limit)
	out := make([]kv.KeyVersion, len(keys))
	for i, k := range keys {
		out[i] = kv.KeyVersion{Key: k, Version: v.ver}
	}
	return out, err
}

// FuzzLoadIdentityCache: whatever the cache file holds (the user may edit
// it), loading it and reading through it neither fails nor panics.
func FuzzLoadIdentityCache(f *testing.F) {
	f.Add([]byte(`{"format":1,"location":"s3://b/p","keys":{"identities/00.json":{"version":"v","identities":[null]}}}`))
	f.Add([]byte(`{"format":1,"location":"s3://b/p","keys":{"tokens/0123456789abcdef.json":{"version":"v","token":{"id":"x"}}}}`))
	f.Add([]byte(`{"format":1,"location":"s3://b/p","keys":{"identities/zz.json":{"version":"v","identities":[{"id":"c-1"}]}}}`))
	f.Add([]byte(`not json`))
	dir := f.TempDir()
	st := localState(dir)
	if err := st.Identities().Update(true, func(r *Records) error {
		r.Identities = append(r.Identities, &Identity{ID: "c-0000000000000001", Name: "node-1", Kind: "client", Role: RolePull, SecretHash: HashSecret("x"), Created: time.Now()})
		return nil
	}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &State{Dir: dir, kv: versionsOf{Store: st.KV(), ver: "v"}, loc: &kv.S3Location{Bucket: "b", Prefix: "p"}}
		path := filepath.Join(t.TempDir(), "cache.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_ = s.LoadIdentityCache(path) // an error is a warning
		r, err := s.Identities().Read()
		if err != nil {
			t.Fatalf("reading through the cache: %v", err)
		}
		// A cache is trusted at the version the store lists (an edited
		// file with the right version is the user's own doing), but what a
		// read answers is always well formed.
		for _, i := range r.Identities {
			if i == nil || i.ID == "" {
				t.Fatalf("read an identity %+v through the cache", i)
			}
		}
		for _, tk := range r.Tokens {
			if tk == nil || tokenKey(tk.ID) == "" {
				t.Fatalf("read a token %+v through the cache", tk)
			}
		}
	})
}
