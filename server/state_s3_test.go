package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// sharedBucket starts MinIO with a fresh bucket and returns its storage
// location (credentials in the environment, as an operator gives them).
func sharedBucket(t testing.TB) (*kvtest.MinIO, *kv.S3Location) {
	t.Helper()
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	loc, err := kv.ParseS3URL("s3://" + m.CreateBucket(t) + "/site?endpoint=" + m.Endpoint + "&region=" + m.Region)
	if err != nil {
		t.Fatal(err)
	}
	return m, loc
}

// replicas initialises the device in loc from n replicas at once and
// returns their states.
func replicas(t *testing.T, loc *kv.S3Location, n int) []*State {
	t.Helper()
	sts := make([]*State, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sts[i], errs[i] = EnsureS3(context.Background(), loc, testOptions("edge1"), time.Now())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i+1, err)
		}
	}
	return sts
}

// TestSharedFirstStartOneCA: three replicas starting on an empty bucket at
// the same moment agree on one device, one CA and one admin password, and
// the state keys are the data dir's file names.
func TestSharedFirstStartOneCA(t *testing.T) {
	m, loc := sharedBucket(t)
	sts := replicas(t, loc, 3)
	for i, st := range sts[1:] {
		if st.CA.Fingerprint() != sts[0].CA.Fingerprint() {
			t.Errorf("replica %d has CA %s, replica 1 %s", i+2, st.CA.Fingerprint(), sts[0].CA.Fingerprint())
		}
		if st.Device.HTTPSecret != sts[0].Device.HTTPSecret || st.Device.Created != sts[0].Device.Created {
			t.Errorf("replica %d has another device.json", i+2)
		}
		pw0, _ := sts[0].AdminPassword()
		if pw, _ := st.AdminPassword(); pw != pw0 || pw == "" {
			t.Errorf("replica %d has another admin password", i+2)
		}
		a, err := NewAuthenticator(st.Identities())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Verify(AdminUser, pw0); err != nil {
			t.Errorf("replica %d refuses the admin password: %v", i+2, err)
		}
	}
	recs, err := sts[2].Identities().Read()
	if err != nil || len(recs.Identities) != 1 {
		t.Fatalf("identities after three first starts: %v, %v; want the admin once", recs, err)
	}
	want := map[string]bool{}
	for _, k := range []string{deviceFile, caCertFile, caKeyFile, serverCertFile, serverKeyFile, adminFile, identitiesFile, kv.DeviceKey, initializedKey} {
		want["site/edgecr/state/"+k+"!"] = true
	}
	for _, o := range m.Objects(t, loc.Bucket, "site/edgecr/state/") {
		if strings.HasPrefix(o, "site/edgecr/state/"+shardDir) {
			continue // the admin's shard and the change counter
		}
		if !want[o] {
			t.Errorf("unexpected object %s", o)
		}
		delete(want, o)
	}
	if len(want) > 0 {
		t.Errorf("missing objects %v", want)
	}
	// A replica with only the URL (no --name) serves the same device.
	st, err := EnsureS3(context.Background(), loc, InitOptions{DefaultName: func() (string, error) { return "other-host", nil }}, time.Now())
	if err != nil || st.Device.Host != sts[0].Device.Host {
		t.Fatalf("a replica with only the URL: %v, %v", st, err)
	}
	// A device of another name is refused.
	if _, err := EnsureS3(context.Background(), loc, testOptions("edge2"), time.Now()); !errors.Is(err, kv.ErrOtherDevice) {
		t.Fatalf("another device on the bucket: %v", err)
	}
}

// TestSharedRedeemExact: a token's uses are spent exactly once each when
// joins race on three replicas (a 1-use token by two, 10 uses by 30).
func TestSharedRedeemExact(t *testing.T) {
	_, loc := sharedBucket(t)
	sts := replicas(t, loc, 3)
	for _, tc := range []struct{ uses, joins int }{{1, 2}, {10, 30}} {
		t.Run(fmt.Sprintf("%d uses, %d joins", tc.uses, tc.joins), func(t *testing.T) {
			now := time.Now()
			tk, raw, err := sts[0].CreateToken(TokenOptions{TTL: time.Hour, Uses: tc.uses, Role: RolePull}, now)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ParseToken(raw)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			ok, usedUp := 0, 0
			var other []error
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range tc.joins {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, err := sts[i%3].Redeem(p, fmt.Sprintf("client-%d", i), now)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						ok++
					case errors.Is(err, ErrTokenUsedUp):
						usedUp++
					default:
						other = append(other, err)
					}
				}()
			}
			t0 := time.Now()
			close(start)
			wg.Wait()
			t.Logf("%d joins over 3 replicas in %s: %d joined, %d used up", tc.joins, time.Since(t0).Round(time.Millisecond), ok, usedUp)
			if ok != tc.uses || usedUp != tc.joins-tc.uses || len(other) > 0 {
				t.Fatalf("%d joined, %d used up, other errors %v; want %d and %d", ok, usedUp, other, tc.uses, tc.joins-tc.uses)
			}
			tks, err := sts[1].Tokens()
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range tks {
				if x.ID == tk.ID && x.Used != tc.uses {
					t.Fatalf("token used %d times, want %d", x.Used, tc.uses)
				}
			}
		})
	}
	recs, err := sts[2].Identities().Read()
	if err != nil || len(recs.Identities) != 1+1+10 {
		t.Fatalf("%d identities, %v; want admin + 11 clients", len(recs.Identities), err)
	}
}

// TestSharedRevocationEverywhere: a client revoked through one replica is
// refused by another replica's authenticator within 2 s, and that
// authenticator answers from memory (it keeps answering with MinIO down).
func TestSharedRevocationEverywhere(t *testing.T) {
	m, loc := sharedBucket(t)
	sts := replicas(t, loc, 3)
	_, raw, err := sts[0].CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePush}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ParseToken(raw)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	auths := make([]*Authenticator, 3)
	for i, st := range sts {
		if auths[i], err = NewAuthenticator(st.Identities()); err != nil {
			t.Fatal(err)
		}
		go auths[i].Run(ctx, AuthPollInterval, func(err error) { t.Logf("replica %d: %v", i+1, err) })
	}
	res, err := sts[0].Redeem(p, "laptop", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seen := func(i int, want error) time.Duration {
		t0 := time.Now()
		for {
			_, err := auths[i].Verify(res.ClientID, res.Secret)
			if errors.Is(err, want) || err == want {
				return time.Since(t0)
			}
			if time.Since(t0) > 5*time.Second {
				t.Fatalf("replica %d: Verify = %v after 5 s, want %v", i+1, err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i := range 3 {
		t.Logf("replica %d accepts the new client after %s", i+1, seen(i, nil).Round(time.Millisecond))
	}
	if err := sts[1].RevokeClient(res.ClientID, time.Now()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		d := seen(i, ErrRevoked)
		t.Logf("replica %d refuses the revoked client after %s", i+1, d.Round(time.Millisecond))
		if d > 2*time.Second {
			t.Errorf("replica %d took %s to refuse a revoked client, more than 2 s", i+1, d)
		}
	}
	// No object-store round trip per request: with MinIO gone the answers
	// are the same, at once.
	pw, _ := sts[0].AdminPassword()
	m.Stop()
	t0 := time.Now()
	if _, err := auths[2].Verify(res.ClientID, res.Secret); !errors.Is(err, ErrRevoked) {
		t.Fatalf("with MinIO down: %v", err)
	}
	if _, err := auths[2].Verify(AdminUser, pw); err != nil {
		t.Fatalf("admin with MinIO down: %v", err)
	}
	if d := time.Since(t0); d > 50*time.Millisecond {
		t.Errorf("two Verify calls took %s with MinIO down", d)
	}
}

// TestSharedHalfPresent: once a bucket's device is initialised, a state key
// missing next to the others is refused as in a data dir, and nothing is
// recreated (a new identities.json would forget every client).
func TestSharedHalfPresent(t *testing.T) {
	_, loc := sharedBucket(t)
	st := replicas(t, loc, 1)[0]
	ctx := context.Background()
	if err := st.KV().Delete(ctx, identitiesFile, ""); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureS3(ctx, loc, testOptions("edge1"), time.Now())
	if !errors.Is(err, ErrHalfPresent) || !strings.Contains(err.Error(), "identities.json missing") || !strings.Contains(err.Error(), "bucket") {
		t.Fatalf("got %v", err)
	}
	if _, _, err := st.KV().Get(ctx, identitiesFile); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("identities.json recreated: %v", err)
	}
}

// TestSharedUnfinishedMigration: a bucket whose migration (edgecrd
// migrate) has not finished is refused by serve, init and the admin
// commands, so that a start cannot create a second CA or device.json the
// migration's resumption would then conflict with; once it finished, the
// bucket loads.
func TestSharedUnfinishedMigration(t *testing.T) {
	_, loc := sharedBucket(t)
	st := replicas(t, loc, 1)[0]
	ctx := context.Background()
	ver, err := st.KV().Put(ctx, migrationKey, []byte(`{"device":"edge1.internal","source":"box:/var/lib/edgecrd","started":"2026-12-07T00:00:00Z"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func() error{
		"load":   func() error { _, err := LoadS3(ctx, loc); return err },
		"ensure": func() error { _, err := EnsureS3(ctx, loc, testOptions("edge1"), time.Now()); return err },
	} {
		err := open()
		if err == nil || !strings.Contains(err.Error(), "has not finished: run edgecrd migrate again") {
			t.Errorf("%s on a bucket with an unfinished migration: %v", name, err)
		}
	}
	if _, err := st.KV().Put(ctx, migrationKey, []byte(`{"device":"edge1.internal","source":"box:/var/lib/edgecrd","finished":"2026-12-07T00:01:00Z"}`), ver); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadS3(ctx, loc); err != nil {
		t.Errorf("load after the migration finished: %v", err)
	}
}

// TestSharedRevocationWhenPollsFallBehind: a replica whose polls stopped
// (a slow or restarting store) must not accept a credential revoked more
// than RevocationBound ago: it checks the store itself before it accepts,
// and refuses with ErrIdentitiesUnchecked when it cannot. Refusals need no
// check. (The S3 soak once saw a revoked client accepted for 2 s.)
func TestSharedRevocationWhenPollsFallBehind(t *testing.T) {
	m, loc := sharedBucket(t)
	sts := replicas(t, loc, 2)
	_, raw, err := sts[0].CreateToken(TokenOptions{TTL: time.Hour, Uses: 2, Role: RolePush}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ParseToken(raw)
	a, b := mustRedeem(t, sts[0], p, "a"), mustRedeem(t, sts[0], p, "b")
	auth, err := NewAuthenticator(sts[1].Identities())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go auth.Run(ctx, time.Hour, nil) // polled, but its first poll is an hour away
	for !auth.polled.Load() {
		time.Sleep(time.Millisecond)
	}
	if _, err := auth.Verify(a.ClientID, a.Secret); err != nil {
		t.Fatalf("a fresh copy: %v", err)
	}
	if err := sts[0].RevokeClient(a.ClientID, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(RevocationBound + 100*time.Millisecond)
	if _, err := auth.Verify(a.ClientID, a.Secret); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked %s ago, no poll since: Verify = %v, want %v", RevocationBound, err, ErrRevoked)
	}
	if _, err := auth.Verify(b.ClientID, b.Secret); err != nil {
		t.Fatalf("the live client after the check: %v", err)
	}
	m.Stop()
	time.Sleep(RevocationBound + 100*time.Millisecond)
	if _, err := auth.Verify(b.ClientID, "wrong"); !errors.Is(err, ErrBadSecret) {
		t.Fatalf("a wrong secret with the store down: %v, want %v", err, ErrBadSecret)
	}
	if _, err := auth.Verify(a.ClientID, a.Secret); !errors.Is(err, ErrRevoked) {
		t.Fatalf("the revoked client with the store down: %v, want %v", err, ErrRevoked)
	}
	_, err = auth.Verify(b.ClientID, b.Secret)
	if !errors.Is(err, ErrIdentitiesUnchecked) {
		t.Fatalf("the live client, store down for %s: Verify = %v, want %v", RevocationBound, err, ErrIdentitiesUnchecked)
	}
	t.Logf("live client, store down: %v", err)
}

func mustRedeem(t *testing.T, st *State, p ParsedToken, name string) *JoinResult {
	t.Helper()
	res, err := st.Redeem(p, name, time.Now())
	if err != nil {
		t.Fatalf("redeeming for %s: %v", name, err)
	}
	return res
}
