package server

import (
	"context"
	"fmt"
	"testing"
	"time"
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
