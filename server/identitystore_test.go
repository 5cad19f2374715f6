package server

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// An identities.json from before the shards is converted on the first
// start, also when an earlier conversion died before its last write
// (shards written from an older version of the document, a stale token
// key): the document in charge wins, and a revoked client stays revoked.
func TestIdentitiesConversionResumes(t *testing.T) {
	st, err := Ensure(t.TempDir(), testOptions("conv"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store := st.Identities()
	pw, _ := st.AdminPassword()
	now := time.Now().UTC()
	old := &Records{
		Identities: []*Identity{
			{ID: AdminUser, Name: AdminUser, Role: RoleAdmin, SecretHash: HashSecret(pw), Created: now},
			{ID: "c-0000000000000001", Name: "kept", Kind: "client", Role: RolePush, SecretHash: HashSecret("s1"), Created: now},
			{ID: "c-0000000000000002", Name: "gone", Kind: "client", Role: RolePull, SecretHash: HashSecret("s2"), Created: now, Revoked: &now},
		},
		Tokens: []*Token{{ID: "00000000000000aa", SecretHash: HashSecret("t"), Role: RolePull, Created: now, Expires: now.Add(time.Hour), Uses: 5, Used: 3}},
	}
	// A conversion that died after writing shards and tokens from a
	// document that then changed (the previous release revoked the client
	// and removed a token), before the marker.
	before := &Records{
		Identities: []*Identity{old.Identities[0], old.Identities[1],
			{ID: "c-0000000000000002", Name: "gone", Kind: "client", Role: RolePull, SecretHash: HashSecret("s2"), Created: now}},
		Tokens: []*Token{{ID: "00000000000000bb", SecretHash: HashSecret("u"), Role: RolePull, Created: now, Expires: now.Add(time.Hour), Uses: 1},
			{ID: "00000000000000aa", SecretHash: HashSecret("t"), Role: RolePull, Created: now, Expires: now.Add(time.Hour), Uses: 5, Used: 1}},
	}
	if err := store.writeAll(ctx, before); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(old, "", "  ")
	if _, err := st.put(identitiesFile, append(b, '\n'), mustVer(t, st)); err != nil {
		t.Fatal(err)
	}
	// The previous release's layout reads as it is, unchanged.
	if r, err := store.Read(); err != nil || len(r.Identities) != 3 || r.Identities[2].Revoked == nil {
		t.Fatalf("reading the old layout: %+v, %v", r, err)
	}
	if _, err := Ensure(st.Dir, testOptions("conv"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if m, _, _, _ := st.get(identitiesFile); string(m) != string(markerBytes) {
		t.Fatalf("identities.json after the first start:\n%s", m)
	}
	r, err := store.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Identities) != 3 || len(r.Tokens) != 1 || r.Tokens[0].ID != "00000000000000aa" || r.Tokens[0].Used != 3 {
		t.Fatalf("converted: %d identities, tokens %+v", len(r.Identities), r.Tokens)
	}
	a, err := NewAuthenticator(store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify("c-0000000000000002", "s2"); !errors.Is(err, ErrRevoked) {
		t.Errorf("the revoked client: %v", err)
	}
	if role, err := a.Verify("c-0000000000000001", "s1"); err != nil || role != RolePush {
		t.Errorf("the kept client: %v, %v", role, err)
	}
	// Revoked in another process: refused on the next request.
	if err := NewIdentityStore(st.Dir).Revoke("c-0000000000000001", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify("c-0000000000000001", "s1"); !errors.Is(err, ErrRevoked) {
		t.Errorf("after revocation: %v", err)
	}
	// A newer format is refused, not guessed at.
	if _, err := st.put(identitiesFile, []byte(`{"format": 3}`), mustVer(t, st)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Read(); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("format 3: %v", err)
	}
}

func mustVer(t *testing.T, st *State) kv.Version {
	t.Helper()
	_, ver, err := st.KV().Get(context.Background(), identitiesFile)
	if err != nil {
		t.Fatal(err)
	}
	return ver
}

// The identity layout's files an operator may edit: a shard, a token, the
// change counter, the marker. Errors, never panics; what a shard or token
// parser accepts survives its encoder.
func FuzzParseIdentityKeys(f *testing.F) {
	store := &IdentityStore{where: "identities.json"}
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	id := "c-0000000000000001"
	f.Add(encodeShard([]*Identity{{ID: id, Name: "n", Kind: "client", Role: RolePull, SecretHash: HashSecret("s"), Created: now}}))
	f.Add(encodeToken(&Token{ID: "00000000000000aa", SecretHash: HashSecret("t"), Role: RolePull, Created: now, Expires: now, Uses: 2, Used: 1}))
	f.Add([]byte(`{"seq":3,"shards":{"0a":3,"zz":1}}`))
	f.Add(markerBytes)
	f.Add([]byte(`{"format":"2"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := shardOf(id)
		if ids, err := store.parseShard(n, b); err == nil {
			again, err := store.parseShard(n, encodeShard(ids))
			if err != nil || len(again) != len(ids) {
				t.Fatalf("shard %q: re-encoded %d → %d, %v", b, len(ids), len(again), err)
			}
		}
		if tk, err := store.parseToken(tokenKey("00000000000000aa"), b); err == nil {
			if _, err := store.parseToken(tokenKey(tk.ID), encodeToken(tk)); err != nil {
				t.Fatalf("token %q: re-encoded: %v", b, err)
			}
		}
		_, _ = parseChanges("changes.json", b)
		_, _ = parseLayout("identities.json", b)
	})
}

// A bucket from the previous release (identities.json holding everything)
// is converted by the first replica that starts on it, and its clients
// and token keep working.
func TestIdentitiesConversionOnBucket(t *testing.T) {
	_, loc := sharedBucket(t)
	st, err := EnsureS3(context.Background(), loc, testOptions("conv"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := st.AdminPassword()
	now := time.Now().UTC()
	old := &Records{
		Identities: []*Identity{
			{ID: AdminUser, Name: AdminUser, Role: RoleAdmin, SecretHash: HashSecret(pw), Created: now},
			{ID: "c-0000000000000001", Name: "kept", Kind: "client", Role: RolePush, SecretHash: HashSecret("s1"), Created: now},
		},
		Tokens: []*Token{{ID: "00000000000000aa", SecretHash: HashSecret("t"), Role: RolePull, Created: now, Expires: now.Add(time.Hour), Uses: 5, Used: 3}},
	}
	ctx := context.Background()
	for _, k := range []string{shardKey(shardOf(AdminUser)), changesKey} {
		if err := st.KV().Delete(ctx, k, ""); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.MarshalIndent(old, "", "  ")
	if _, err := st.put(identitiesFile, append(b, '\n'), mustVer(t, st)); err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator(st.Identities())
	if err != nil {
		t.Fatal(err)
	}
	if role, err := a.Verify("c-0000000000000001", "s1"); err != nil || role != RolePush {
		t.Errorf("the old client: %v, %v", role, err)
	}
	if m, _, _, _ := st.get(identitiesFile); string(m) != string(markerBytes) {
		t.Fatalf("identities.json after the first start:\n%s", m)
	}
	tks, err := st.Tokens()
	if err != nil || len(tks) != 1 || tks[0].Used != 3 {
		t.Fatalf("tokens after conversion: %+v, %v", tks, err)
	}
}
