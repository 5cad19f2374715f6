package server

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// TestRedeemGroupedExact: joins racing on one token through two States on
// the same store (two replicas on a bucket; serve and an admin command on
// a data dir), many at once in each so that they commit in groups, spend
// each use exactly once: as many joins succeed as the token has uses, the
// rest are TOKEN_USED_UP, a wrong secret in the same group is refused on
// its own, the stored count is the uses, and every joined client has its
// own identity whose credential verifies.
func TestRedeemGroupedExact(t *testing.T) {
	for _, backend := range []string{"dir", "s3"} {
		t.Run(backend, func(t *testing.T) {
			var sts [2]*State
			var counter *kvtest.Counter
			if backend == "dir" {
				dir := t.TempDir()
				st, err := Ensure(dir, testOptions("edge1"), time.Now())
				if err != nil {
					t.Fatal(err)
				}
				other, err := Load(dir)
				if err != nil {
					t.Fatal(err)
				}
				sts = [2]*State{st, other}
			} else {
				m := kvtest.StartMinIO(t)
				m.SetCredentials(t)
				bucket := m.CreateBucket(t)
				counter = &kvtest.Counter{}
				for i := range sts {
					cfg := kv.S3Config{Bucket: bucket, KeyPrefix: "site/edgecr/state/", Endpoint: m.Endpoint, Region: m.Region}
					if i == 0 {
						cfg.HTTPClient = &http.Client{Transport: counter}
					}
					s, err := kv.NewS3(cfg)
					if err != nil {
						t.Fatal(err)
					}
					if i == 0 {
						sts[i] = replicaState(t, s)
					} else {
						sts[i], err = load(&State{kv: s, loc: sts[0].loc})
						if err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			for _, tc := range []struct{ uses, joins int }{{1, 16}, {25, 60}} {
				t.Run(fmt.Sprintf("%d uses, %d joins", tc.uses, tc.joins), func(t *testing.T) {
					now := time.Now()
					tk, raw, err := sts[0].CreateToken(TokenOptions{TTL: time.Hour, Uses: tc.uses, Role: RolePush}, now)
					if err != nil {
						t.Fatal(err)
					}
					p, _ := ParseToken(raw)
					wrong := p
					wrong.Secret = p.Secret[:len(p.Secret)-1] + "x"
					if wrong.Secret == p.Secret {
						wrong.Secret = p.Secret[:len(p.Secret)-1] + "y"
					}
					var mu sync.Mutex
					var joined []*JoinResult
					usedUp, invalid := 0, 0
					var other []error
					var wg sync.WaitGroup
					start := make(chan struct{})
					for i := range tc.joins + 2 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							<-start
							tok := p
							if i >= tc.joins {
								tok = wrong // two wrong secrets among them
							}
							res, err := sts[i%2].Redeem(tok, fmt.Sprintf("node-%d", i), now)
							mu.Lock()
							defer mu.Unlock()
							switch {
							case err == nil && i < tc.joins:
								joined = append(joined, res)
							case errors.Is(err, ErrTokenUsedUp) && i < tc.joins:
								usedUp++
							case errors.Is(err, ErrTokenInvalid) && i >= tc.joins:
								invalid++
							default:
								other = append(other, fmt.Errorf("join %d: %v", i, err))
							}
						}()
					}
					if counter != nil {
						counter.Take()
					}
					close(start)
					wg.Wait()
					if len(joined) != tc.uses || usedUp != tc.joins-tc.uses || invalid != 2 || len(other) > 0 {
						t.Fatalf("%d joined, %d used up, %d invalid, other %v; want %d, %d and 2", len(joined), usedUp, invalid, other, tc.uses, tc.joins-tc.uses)
					}
					if counter != nil {
						t.Logf("the requests of state 0 (half the joins): %s", kvtest.Format(counter.Take()))
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
					a, err := NewAuthenticator(sts[0].Identities())
					if err != nil {
						t.Fatal(err)
					}
					ids := map[string]bool{}
					for _, res := range joined {
						if ids[res.ClientID] {
							t.Fatalf("client id %s given twice", res.ClientID)
						}
						ids[res.ClientID] = true
						if role, err := a.Verify(res.ClientID, res.Secret); err != nil || role != RolePush {
							t.Fatalf("client %s: Verify = %v, %v", res.ClientID, role, err)
						}
					}
				})
			}
		})
	}
}

// TestRedeemGroupsWrites: 16 joins released at once on one State write the
// token and the shards fewer times than they join (they commit in groups),
// and each still gets its own identity.
func TestRedeemGroupsWrites(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	counter := &kvtest.Counter{}
	s, err := kv.NewS3(kv.S3Config{Bucket: m.CreateBucket(t), KeyPrefix: "site/edgecr/state/", Endpoint: m.Endpoint, Region: m.Region, HTTPClient: &http.Client{Transport: counter}})
	if err != nil {
		t.Fatal(err)
	}
	st := replicaState(t, s)
	_, raw, err := st.CreateToken(TokenOptions{TTL: time.Hour, Uses: 16, Role: RolePull}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ParseToken(raw)
	counter.Take()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = st.Redeem(p, fmt.Sprintf("node-%d", i), time.Now())
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
	}
	got := counter.Take()
	t.Logf("16 joins: %s", kvtest.Format(got))
	if puts := got["PUT 200"]; puts >= 16 {
		t.Errorf("16 joins at once made %d writes; want fewer than 16 (a token write and a shard write a group)", puts)
	}
	recs, err := st.Identities().Read()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(recs.Identities); n != 17 {
		t.Fatalf("%d identities, want the admin and 16 clients", n)
	}
}
