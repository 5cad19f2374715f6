package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// BenchmarkJoinCost is the per-join cost (Redeem) at n identities, on a
// data dir and on a bucket (MinIO on loopback): one CAS on the token's key
// and one on the new identity's shard (identitystore.go), whose size is
// reported.
//
//	go test ./server -run '^$' -bench JoinCost -benchtime 20x
func BenchmarkJoinCost(b *testing.B) {
	for _, backend := range []string{"dir", "s3"} {
		for _, n := range []int{100, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/%d", backend, n), func(b *testing.B) {
				var st *State
				var err error
				if backend == "dir" {
					st, err = Ensure(b.TempDir(), testOptions("bench"), time.Now())
				} else {
					st, err = benchBucket(b)
				}
				if err != nil {
					b.Fatal(err)
				}
				err = st.Identities().Update(false, func(r *Records) error {
					for i := range n {
						r.Identities = append(r.Identities, &Identity{ID: fmt.Sprintf("c-%016x", i), Name: "client", Kind: "client", Role: RolePull, SecretHash: HashSecret("x"), Created: time.Now().UTC()})
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				_, raw, err := st.CreateToken(TokenOptions{TTL: time.Hour, Uses: b.N, Role: RolePull}, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				p, _ := ParseToken(raw)
				size := 0
				if b, _, ok, _ := st.get(shardKey(shardOf(fmt.Sprintf("c-%016x", 0)))); ok {
					size = len(b)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := st.Redeem(p, "bench", time.Now()); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(size)/1024, "KiB/shard")
			})
		}
	}
}

func benchBucket(b *testing.B) (*State, error) {
	_, loc := sharedBucket(b)
	return EnsureS3(context.Background(), loc, testOptions("bench"), time.Now())
}

// BenchmarkRedeemRequests is what joins cost the object store: 2,000 joins
// on one token by 8 joiners through State.Redeem on a bucket (MinIO on
// loopback), with the requests counted: PUTs and GETs a join.
//
//	go test ./server -run '^$' -bench RedeemRequests -benchtime 1x -v
func BenchmarkRedeemRequests(b *testing.B) {
	const joins = 2000
	m := kvtest.StartMinIO(b)
	m.SetCredentials(b)
	for range b.N {
		b.StopTimer()
		counter := &kvtest.Counter{}
		s, err := kv.NewS3(kv.S3Config{Bucket: m.CreateBucket(b), KeyPrefix: "site/edgecr/state/", Endpoint: m.Endpoint, Region: m.Region, HTTPClient: &http.Client{Transport: counter}})
		if err != nil {
			b.Fatal(err)
		}
		st, err := ensure(&State{Dir: b.TempDir(), kv: s, loc: &kv.S3Location{Bucket: "bench", Region: "us-east-1"}, imagesInDir: true}, testOptions("bench"), time.Now())
		if err != nil {
			b.Fatal(err)
		}
		_, raw, err := st.CreateToken(TokenOptions{TTL: time.Hour, Uses: joins, Role: RolePull}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		p, _ := ParseToken(raw)
		counter.Take()
		var next atomic.Int64
		var wg sync.WaitGroup
		b.StartTimer()
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= joins; i = next.Add(1) {
					if _, err := st.Redeem(p, fmt.Sprintf("node-%d", i), time.Now()); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		got := counter.Take()
		puts, gets := 0, 0
		for k, n := range got {
			switch {
			case strings.HasPrefix(k, "PUT"):
				puts += n
			case strings.HasPrefix(k, "GET"):
				gets += n
			}
		}
		b.Logf("%d joins: %s; load %s", joins, kvtest.Format(got), loadAvg())
		b.ReportMetric(float64(puts)/joins, "PUTs/join")
		b.ReportMetric(float64(gets)/joins, "GETs/join")
	}
}
