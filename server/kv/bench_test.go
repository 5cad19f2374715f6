package kv_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// BenchmarkStore measures Get, an unchanged GetIfChanged poll, a
// create-only Put, an uncontended compare-and-swap (Get + Put) and one
// contended by parallel goroutines, on both stores, with the object store
// requests per operation (by method and status) for S3:
//
//	go test ./server/kv -run '^$' -bench Store -benchtime 200x
func BenchmarkStore(b *testing.B) {
	b.Run("dir", func(b *testing.B) {
		d, err := kv.OpenDir(filepath.Join(b.TempDir(), "state"))
		if err != nil {
			b.Fatal(err)
		}
		benchStore(b, d, nil)
	})
	b.Run("s3", func(b *testing.B) {
		m := kvtest.StartMinIO(b)
		m.SetCredentials(b)
		c := &kvtest.Counter{}
		s, err := kv.NewS3(kv.S3Config{Bucket: m.CreateBucket(b), KeyPrefix: "bench/", Endpoint: m.Endpoint, Region: m.Region,
			HTTPClient: &http.Client{Transport: c}})
		if err != nil {
			b.Fatal(err)
		}
		benchStore(b, s, c)
	})
}

func benchStore(b *testing.B, s kv.Store, c *kvtest.Counter) {
	ctx := context.Background()
	val := []byte(strings.Repeat("v", 1024))
	ver, err := s.Put(ctx, "hot", val, "")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Put(ctx, "counter", []byte("0"), ""); err != nil {
		b.Fatal(err)
	}
	var conflicts atomic.Int64
	run := func(name string, parallel bool, op func(i int) error) {
		b.Run(name, func(b *testing.B) {
			if c != nil {
				c.Take()
			}
			var n atomic.Int64
			conflicts.Store(0)
			b.ResetTimer()
			if parallel {
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := op(int(n.Add(1))); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for i := 0; b.Loop(); i++ {
					if err := op(i); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			if strings.HasPrefix(name, "CAS") {
				b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/op")
			}
			if c != nil {
				counts := c.Take()
				b.ReportMetric(float64(kvtest.Total(counts))/float64(b.N), "req/op")
				for k, v := range counts {
					b.ReportMetric(float64(v)/float64(b.N), strings.ReplaceAll(k, " ", "_")+"/op")
				}
			}
		})
	}
	run("Get", false, func(int) error { _, _, err := s.Get(ctx, "hot"); return err })
	run("GetIfChanged", false, func(int) error {
		_, _, changed, err := s.GetIfChanged(ctx, "hot", ver)
		if err == nil && changed {
			err = errors.New("changed")
		}
		return err
	})
	prefix := fmt.Sprintf("new/%p/", b)
	run("PutCreate", false, func(i int) error { _, err := s.Put(ctx, prefix+strconv.Itoa(i), val, ""); return err })
	inc := func(int) error {
		for {
			v, ver, err := s.Get(ctx, "counter")
			if err != nil {
				return err
			}
			n, _ := strconv.Atoi(string(v))
			if _, err = s.Put(ctx, "counter", []byte(strconv.Itoa(n+1)), ver); !errors.Is(err, kv.ErrConflict) {
				return err
			}
			conflicts.Add(1)
		}
	}
	run("CAS", false, inc)
	run("CASContended4", true, inc)
}
