package server

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// slowTransport stretches pushes: upload bodies trickle, and every
// manifest PUT waits, which widens the window between a client's HEAD
// ("this layer exists, skip it") and the manifest that references it.
type slowTransport struct {
	base          http.RoundTripper
	chunk         int
	chunkDelay    time.Duration
	manifestDelay time.Duration
}

func (s *slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/"):
		time.Sleep(s.manifestDelay)
	case (r.Method == http.MethodPatch || r.Method == http.MethodPut) && r.Body != nil && strings.Contains(r.URL.Path, "/blobs/uploads/"):
		r = r.Clone(r.Context())
		r.Body = &slowBody{ReadCloser: r.Body, chunk: s.chunk, delay: s.chunkDelay}
		r.GetBody = nil
	}
	return s.base.RoundTrip(r)
}

type slowBody struct {
	io.ReadCloser
	chunk int
	delay time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	time.Sleep(b.delay)
	return b.ReadCloser.Read(p[:min(len(p), b.chunk)])
}

// Acceptance 2: 20 rounds of concurrent pushes while collections run back
// to back, in the server and (every third round) as `edgecrd gc` does it
// from another State on the same data dir. Every round starts with a pool
// of stored, unreferenced base layers older than the grace period (and
// the previous rounds' garbage), and the pushes reuse those base layers:
// the collector sees them as garbage while clients are told they exist
// and skip uploading them. Every pushed image must pull with verified
// digests afterwards.
func TestGCConcurrentWithPushes(t *testing.T) {
	if testing.Short() {
		t.Skip("20 rounds of pushes against a running collector")
	}
	const (
		rounds  = 20
		pushers = 4
		grace   = 10 * time.Second // well above a push here (about a second), also under -race
	)
	ts := startServer(t, func(o *Options) { o.TouchInterval = time.Millisecond })
	slow := append(ts.admin(), remote.WithTransport(&slowTransport{
		base: ts.transport(), chunk: 16 << 10, chunkDelay: 8 * time.Millisecond, manifestDelay: 250 * time.Millisecond,
	}))

	type image struct{ ref string }
	var kept []image
	var totalReclaimed atomic.Int64
	var runs, externalRuns, restored atomic.Int64
	rng := rand.New(rand.NewPCG(1, 2))

	for r := range rounds {
		// Base layers for this round's images, stored and unreferenced:
		// garbage, as far as the collector can tell.
		var bases []v1.Layer
		for range 4 {
			bases = append(bases, randomLayer(t, 48<<10, types.DockerLayer))
		}
		seed := ts.push(t, "conc/app:seed", dockerImage(t, 1<<10, 0, bases...))
		ts.deleteManifest(t, "conc/app", seed.String())
		ts.age(t, time.Hour) // everything not touched from now on is past the grace period

		ctx, stop := context.WithCancel(context.Background())
		gcDone := make(chan struct{})
		external := r%3 == 0
		go func() {
			defer close(gcDone)
			for i := 0; ctx.Err() == nil; i++ {
				o := GCOptions{Grace: grace, DeleteUntagged: (r+i)%2 == 1}
				var rep *GCReport
				var err error
				if external {
					var st *State
					if st, err = Load(ts.state.Dir); err == nil {
						rep, err = st.CollectGarbage(context.Background(), o)
					}
					externalRuns.Add(1)
				} else {
					rep, err = ts.srv.CollectGarbage(context.Background(), o)
				}
				if err != nil {
					t.Errorf("round %d: gc: %v", r, err)
					return
				}
				runs.Add(1)
				totalReclaimed.Add(rep.ReclaimedBytes)
				restored.Add(int64(rep.Restored))
				time.Sleep(10 * time.Millisecond)
			}
		}()

		var wg sync.WaitGroup
		refs := make([]string, pushers)
		var mu sync.Mutex
		picks := make([][]v1.Layer, pushers)
		for g := range pushers {
			picks[g] = []v1.Layer{bases[rng.IntN(len(bases))], bases[rng.IntN(len(bases))]}
		}
		for g := range pushers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ref := fmt.Sprintf("conc/app:r%02d-g%d", r, g)
				var err error
				switch g % 3 {
				case 0:
					img := dockerImage(t, 96<<10, 1, picks[g]...)
					err = remote.Write(ts.ref(ref), img, slow...)
				case 1:
					img := ociImage(t, 80<<10, 2, picks[g][0])
					err = remote.Write(ts.ref(ref), img, slow...)
				case 2:
					idx := platformIndex(t, map[string]v1.Image{
						"linux/amd64": dockerImage(t, 64<<10, 1, picks[g][0]),
						"linux/arm64": dockerImage(t, 64<<10, 1, picks[g][1]),
					})
					err = remote.WriteIndex(ts.ref(ref), idx, slow...)
				}
				if err != nil {
					t.Errorf("round %d: pushing %s: %v", r, ref, err)
					return
				}
				mu.Lock()
				refs[g] = ref
				mu.Unlock()
			}()
		}
		wg.Wait()
		stop()
		<-gcDone
		if t.Failed() {
			t.FailNow()
		}
		for _, ref := range refs {
			ts.pullVerified(t, ref)
		}
		// Keep one image of the round; the others become garbage for the
		// next rounds, deleted by digest or by tag.
		keep := rng.IntN(pushers)
		for g, ref := range refs {
			if g == keep {
				kept = append(kept, image{ref})
				continue
			}
			_, tag, _ := strings.Cut(ref, ":")
			if g%2 == 0 {
				desc, err := remote.Head(ts.ref(ref), ts.admin()...)
				if err != nil {
					t.Fatal(err)
				}
				tag = desc.Digest.String()
			}
			ts.deleteManifest(t, "conc/app", tag)
		}
	}
	for _, k := range kept {
		ts.pullVerified(t, k.ref)
	}
	// One last collection with nothing running: only garbage goes.
	ts.age(t, time.Hour)
	ts.gc(t, GCOptions{Grace: grace, DeleteUntagged: true})
	for _, k := range kept {
		ts.pullVerified(t, k.ref)
	}
	if totalReclaimed.Load() == 0 || externalRuns.Load() == 0 {
		t.Fatalf("collections reclaimed %d bytes in %d runs (%d external): the test did not exercise the sweep",
			totalReclaimed.Load(), runs.Load(), externalRuns.Load())
	}
	t.Logf("%d collections (%d as edgecrd gc) reclaimed %d bytes while pushing; %d items put back after a client used them",
		runs.Load(), externalRuns.Load(), totalReclaimed.Load(), restored.Load())
}
