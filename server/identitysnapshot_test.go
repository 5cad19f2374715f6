package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// snapshotSite is a bucket with a device of n clients and 20 tokens, the
// State that writes it (a serving replica) and a way to open a reader
// State as a new process would (no cache), counting its requests.
type snapshotSite struct {
	writer *State
	open   func(t *testing.T) (*State, *kvtest.Counter, *syncBuffer)
}

func newSnapshotSite(t *testing.T, n int) *snapshotSite {
	t.Helper()
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	bucket := m.CreateBucket(t)
	newStore := func(c *kvtest.Counter) kv.Store {
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
	site := &snapshotSite{writer: replicaState(t, newStore(nil))}
	now := time.Now().UTC()
	err := site.writer.Identities().Update(false, func(r *Records) error {
		for i := range n {
			r.Identities = append(r.Identities, &Identity{ID: fmt.Sprintf("c-%016x", i), Name: fmt.Sprintf("node-%d", i), Kind: "client", Role: RolePull, SecretHash: HashSecret("x"), Created: now})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, _, err := site.writer.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePull}, now); err != nil {
			t.Fatal(err)
		}
	}
	site.open = func(t *testing.T) (*State, *kvtest.Counter, *syncBuffer) {
		t.Helper()
		c := &kvtest.Counter{}
		st, err := load(&State{kv: newStore(c), loc: site.writer.loc})
		if err != nil {
			t.Fatal(err)
		}
		logs := &syncBuffer{}
		st.SetLogger(slog.New(slog.NewTextHandler(logs, nil)))
		c.Take()
		return st, c, logs
	}
	return site
}

func clientsByID(t *testing.T, st *State) map[string]ClientInfo {
	t.Helper()
	cl, err := st.Clients()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]ClientInfo{}
	for _, c := range cl {
		out[c.ID] = c
	}
	return out
}

// TestIdentitySnapshot: a new process's first listing on a bucket takes
// the shards from the snapshot a replica wrote (one GET instead of one
// per shard), and what changed since the snapshot (a join, a revocation,
// a token removed and one created, through another process) shows all
// the same: the ETags in the LIST decide, never the snapshot. A snapshot
// that differs in a few keys is not rewritten; one that differs in more
// is.
func TestIdentitySnapshot(t *testing.T) {
	site := newSnapshotSite(t, 2000)
	ctx := context.Background()
	if wrote, err := site.writer.WriteIdentitySnapshot(ctx); err != nil || !wrote {
		t.Fatalf("first snapshot: wrote %v, %v", wrote, err)
	}
	if wrote, err := site.writer.WriteIdentitySnapshot(ctx); err != nil || wrote {
		t.Fatalf("snapshot with nothing changed: wrote %v, %v", wrote, err)
	}

	reader, counter, logs := site.open(t)
	if got := clientsByID(t, reader); len(got) != 2000 {
		t.Fatalf("first read through the snapshot: %d clients, want 2000", len(got))
	}
	// identities.json (the layout), the LISTs of identities/ and tokens/,
	// the snapshot, last seen.
	if got := counter.Take(); kvtest.Total(got) > 5 {
		t.Errorf("a first read with a current snapshot made %s; want at most 5 requests", kvtest.Format(got))
	} else {
		t.Logf("a first read of 2,000 clients with a current snapshot: %s", kvtest.Format(got))
	}
	if tks, err := reader.Tokens(); err != nil || len(tks) != 20 {
		t.Fatalf("tokens: %d, %v", len(tks), err)
	}
	if logs.String() != "" {
		t.Errorf("logged: %s", logs)
	}

	// Another process changes a few keys; the snapshot stays as it was.
	other, _, _ := site.open(t)
	_, raw, err := other.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePush}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ParseToken(raw)
	res, err := other.Redeem(p, "new-node", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.RevokeClient("c-0000000000000007", time.Now()); err != nil {
		t.Fatal(err)
	}
	tks, err := other.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	removed := tks[0].ID
	if err := other.RemoveToken(removed); err != nil {
		t.Fatal(err)
	}
	if wrote, err := site.writer.WriteIdentitySnapshot(ctx); err != nil || wrote {
		t.Fatalf("snapshot after 4 changed keys: wrote %v, %v; want it left as it is", wrote, err)
	}

	reader, counter, _ = site.open(t)
	got := clientsByID(t, reader)
	if len(got) != 2001 || got[res.ClientID].Name != "new-node" || !got["c-0000000000000007"].Revoked || got["c-0000000000000008"].Revoked {
		t.Fatalf("a first read after changes the snapshot does not hold: %d clients, new %+v, revoked %v", len(got), got[res.ClientID], got["c-0000000000000007"].Revoked)
	}
	if n := kvtest.Total(counter.Take()); n > 5+3 {
		t.Errorf("a first read with 3 keys changed since the snapshot made %d requests, want at most 8", n)
	}
	tks, err = reader.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	if len(tks) != 20 {
		t.Fatalf("%d tokens, want 20 (one removed, one created)", len(tks))
	}
	for _, tk := range tks {
		if tk.ID == removed {
			t.Fatalf("token %s removed after the snapshot is listed", removed)
		}
		if tk.ID == p.ID && tk.Used != 1 {
			t.Fatalf("token created after the snapshot: used %d, want 1", tk.Used)
		}
	}

	// Many changes: the next round rewrites it, and a reader takes it.
	err = other.Identities().Update(false, func(r *Records) error {
		for _, i := range r.Identities {
			if i.ID != AdminUser && i.Revoked == nil && strings.HasPrefix(i.ID, "c-0000000000000") && strings.HasSuffix(i.ID, "0") {
				t := time.Now().UTC()
				i.Revoked = &t
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if wrote, err := site.writer.WriteIdentitySnapshot(ctx); err != nil || !wrote {
		t.Fatalf("snapshot after most shards changed: wrote %v, %v", wrote, err)
	}
	reader, counter, _ = site.open(t)
	got = clientsByID(t, reader)
	revoked := 0
	for _, c := range got {
		if c.Revoked {
			revoked++
		}
	}
	if len(got) != 2001 || revoked != 1+125 {
		t.Fatalf("after the rewrite: %d clients, %d revoked; want 2001 and 126", len(got), revoked)
	}
	if got := counter.Take(); kvtest.Total(got) > 5 {
		t.Errorf("a first read with the rewritten snapshot made %s; want at most 5 requests", kvtest.Format(got))
	}
}

// TestIdentitySnapshotBad: a snapshot that does not parse, or that holds
// what a read of its keys could not give, is ignored with a log line, and
// the listing reads every shard and is right.
func TestIdentitySnapshotBad(t *testing.T) {
	site := newSnapshotSite(t, 300)
	ctx := context.Background()
	if wrote, err := site.writer.WriteIdentitySnapshot(ctx); err != nil || !wrote {
		t.Fatalf("snapshot: wrote %v, %v", wrote, err)
	}
	store := site.writer.KV()
	good, ver, err := store.Get(ctx, snapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	// An identity moved into another shard's entry, with that shard's
	// version: a snapshot that would show a client where none is.
	var snap identitySnapshot
	if err := json.Unmarshal(good, &snap); err != nil {
		t.Fatal(err)
	}
	var from, to string
	for key, e := range snap.Keys {
		if _, ok := shardNumber(key); !ok || len(e.Identities) == 0 {
			continue
		}
		if from == "" {
			from = key
		} else if to == "" {
			to = key
		}
	}
	moved := snap.Keys[to]
	moved.Identities = append(moved.Identities, snap.Keys[from].Identities[0])
	snap.Keys[to] = moved
	misplaced, _ := json.Marshal(snap)

	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"not JSON", []byte("\x00garbage{")},
		{"truncated", good[:len(good)/2]},
		{"another format", []byte(`{"format": 99, "keys": {}}`)},
		{"an identity in the wrong shard", misplaced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ver, err = store.Put(ctx, snapshotKey, tc.body, ver); err != nil {
				t.Fatal(err)
			}
			reader, counter, logs := site.open(t)
			got, err := reader.Clients()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 300 {
				t.Fatalf("%d clients, want 300 (each once)", len(got))
			}
			if !strings.Contains(logs.String(), "ignoring the identity snapshot") {
				t.Errorf("nothing logged for a bad snapshot; logs: %q", logs)
			}
			if got := counter.Take(); kvtest.Total(got) < 200 {
				t.Errorf("%s: the shards were not read", kvtest.Format(got))
			}
		})
	}
}
