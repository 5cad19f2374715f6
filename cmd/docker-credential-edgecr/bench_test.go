package main

import (
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/edgecr/edgecr/credhelper"
)

// BenchmarkGet measures `get` the way docker pays for it: one exec of the
// helper per lookup, and in process for the store's own share. The exec
// case also reports the median and 95th percentile wall time per call.
//
//	go test ./cmd/docker-credential-edgecr/ -run '^$' -bench Get -benchtime 500x
func BenchmarkGet(b *testing.B) {
	dir := b.TempDir()
	store := credhelper.NewStore(filepath.Join(dir, "credentials.json"))
	for i := range 20 { // a few registries, as on a busy client
		c := &credentials.Credentials{ServerURL: strings.Replace(host, "dev1", "dev"+string(rune('a'+i)), 1), Username: "u", Secret: secret}
		if err := store.Add(c); err != nil {
			b.Fatal(err)
		}
	}
	if err := store.Add(&credentials.Credentials{ServerURL: host, Username: "client-1", Secret: secret}); err != nil {
		b.Fatal(err)
	}

	b.Run("in-process", func(b *testing.B) {
		for b.Loop() {
			if err := credentials.HandleCommand(store, "get", strings.NewReader(host+"/library/alpine\n"), io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("exec", func(b *testing.B) {
		env := []string{"EDGECR_CONFIG_DIR=" + dir}
		var took []time.Duration
		for b.Loop() {
			start := time.Now()
			r := run(b, env, "get", host+"/library/alpine\n")
			took = append(took, time.Since(start))
			if r.code != 0 {
				b.Fatalf("get: exit %d, %s", r.code, r.stdout)
			}
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-p50")
		b.ReportMetric(float64(took[len(took)*95/100].Microseconds())/1000, "ms-p95")
	})
}
