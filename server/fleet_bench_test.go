package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Issue 14's fleet targets for identity storage: joins up to 10,000
// clients and authentication among 10,000 identities, on a data dir and on
// a bucket (MinIO on loopback). docs/benchmarks.md has the commands and
// figures.

// fleetServer is a running server on a fresh device in a data dir or, for
// "s3", a bucket.
func fleetServer(b *testing.B, backend string) *testServer {
	b.Helper()
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
	o := Options{Listen: "127.0.0.1:0"}
	if backend == "s3" {
		o.ReplicaIPs, o.ReplicaID = ips("127.0.0.1"), "replica-1"
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, st, o)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	return &testServer{state: st, srv: srv, addr: srv.Addr().String()}
}

// fleetJoiner returns what one join is: POST /edgecr/v1/join to a running
// server on a data dir or a bucket, a new connection each (a new node: its
// own TLS handshake).
func fleetJoiner(b *testing.B, backend string, n int) func(i int) error {
	b.Helper()
	ts := fleetServer(b, backend)
	token := benchToken(b, ts, n)
	c := ts.joinClient("")
	return func(i int) error {
		body, _ := json.Marshal(JoinRequest{Token: token, Name: fmt.Sprintf("node-%d", i)})
		resp, err := c.Post(ts.url(APIJoin), "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
}

func fleetJoins() int {
	if v, err := strconv.Atoi(os.Getenv("EDGECR_BENCH_JOINS")); err == nil && v >= 1000 {
		return v
	}
	return 10000
}

// BenchmarkFleetJoins is EDGECR_BENCH_JOINS (default 10,000) clients
// joining one device, 8 at a time, on one token (fleetJoiner: over HTTPS to
// a running server on a data dir and on a bucket): the rate in each tenth
// of the run and the time a join around the 100th against around the last.
//
//	go test ./server -run '^$' -bench FleetJoins -benchtime 1x -timeout 1h -v
func BenchmarkFleetJoins(b *testing.B) {
	for _, backend := range []string{"dir", "s3"} {
		b.Run(backend, func(b *testing.B) {
			n := fleetJoins()
			for range b.N {
				b.StopTimer()
				join := fleetJoiner(b, backend, n)
				lat := make([]time.Duration, n)
				end := make([]time.Time, n)
				var next atomic.Int64
				var failed atomic.Int64
				var wg sync.WaitGroup
				b.StartTimer()
				start := time.Now()
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := int(next.Add(1)) - 1
							if i >= n {
								return
							}
							t0 := time.Now()
							if err := join(i); err != nil {
								if failed.Add(1) == 1 {
									b.Logf("join %d: %v", i, err)
								}
							}
							lat[i], end[i] = time.Since(t0), time.Now()
						}
					}()
				}
				wg.Wait()
				total := time.Since(start)
				b.StopTimer()
				if f := failed.Load(); f > 0 {
					b.Fatalf("%d of %d joins failed", f, n)
				}
				slices.SortFunc(end, func(x, y time.Time) int { return x.Compare(y) })
				tenth := n / 10
				b.Logf("%s: %d joins in %s (%.0f joins/s), load %s", backend, n, total.Round(time.Millisecond), float64(n)/total.Seconds(), loadAvg())
				b.Logf("| joins | joins/s in that tenth |")
				minRate := 1e9
				prev := start
				for k := range 10 {
					last := end[(k+1)*tenth-1]
					rate := float64(tenth) / last.Sub(prev).Seconds()
					minRate = min(minRate, rate)
					b.Logf("| %d-%d | %.0f |", k*tenth+1, (k+1)*tenth, rate)
					prev = last
				}
				// A join's time as the device sees it: the time between
				// answers, over joins 51-150 (around the 100th) and the last
				// 100 but the final 8 (when fewer than 8 joiners are left).
				around100 := end[149].Sub(end[49]) / 100
				lastHundred := end[n-9].Sub(end[n-109]) / 100
				b.Logf("time a join (between answers): joins 51-150 %s, joins %d-%d %s (ratio %.2f); median latency with 8 in flight: %s and %s",
					around100.Round(10*time.Microsecond), n-107, n-8, lastHundred.Round(10*time.Microsecond), float64(lastHundred)/float64(around100),
					medianDur(lat[50:150]).Round(10*time.Microsecond), medianDur(lat[n-108:n-8]).Round(10*time.Microsecond))
				b.ReportMetric(float64(n)/total.Seconds(), "joins/s")
				b.ReportMetric(minRate, "slowest_tenth_joins/s")
				b.ReportMetric(float64(around100.Microseconds())/1000, "ms_join100")
				b.ReportMetric(float64(lastHundred.Microseconds())/1000, "ms_last100")
			}
		})
	}
}

func medianDur(v []time.Duration) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := bytes.Fields(b)
	if len(f) < 3 {
		return "unknown"
	}
	return string(bytes.Join(f[:3], []byte(" ")))
}

// seedIdentities adds n client identities in one Update (every shard
// written once) and returns the id and secret of the last.
func seedIdentities(b *testing.B, st *State, n int) (string, string) {
	b.Helper()
	secret, err := NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	var id string
	err = st.Identities().Update(false, func(r *Records) error {
		for i := range n {
			id = fmt.Sprintf("c-%016x", i)
			r.Identities = append(r.Identities, &Identity{ID: id, Name: fmt.Sprintf("node-%d", i), Kind: "client", Role: RolePull, SecretHash: HashSecret(secret), Created: time.Now().UTC()})
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return id, secret
}

// BenchmarkFleetAuth is an authenticated GET /v2/ among 10,000 identities
// on a data dir (one stat of identities/changes.json a request) and on a
// bucket (memory; the authenticator polls) against the same request
// without credentials (401): the difference is what authentication costs.
// One connection, requests in sequence.
//
//	go test ./server -run '^$' -bench FleetAuth -benchtime 2000x -v
func BenchmarkFleetAuth(b *testing.B) {
	for _, backend := range []string{"dir", "s3"} {
		for _, authed := range []bool{false, true} {
			name := backend + "/anonymous"
			if authed {
				name = backend + "/authenticated"
			}
			b.Run(name, func(b *testing.B) {
				ts := fleetServer(b, backend)
				id, secret := seedIdentities(b, ts.state, 10000)
				c := &http.Client{Transport: ts.transport()}
				get := func() int {
					req, _ := http.NewRequest(http.MethodGet, ts.url("/v2/"), nil)
					if authed {
						req.SetBasicAuth(id, secret)
					}
					resp, err := c.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
					return resp.StatusCode
				}
				want := http.StatusUnauthorized
				if authed {
					want = http.StatusOK
				}
				// Warm: the connection, and on a bucket the new identities
				// (a miss reads the shard).
				deadline := time.Now().Add(10 * time.Second)
				for get() != want && time.Now().Before(deadline) {
					time.Sleep(250 * time.Millisecond)
				}
				b.ResetTimer()
				for range b.N {
					if code := get(); code != want {
						b.Fatalf("GET /v2/: %d, want %d", code, want)
					}
				}
				b.StopTimer()
				b.Logf("load %s", loadAvg())
			})
		}
	}
}

// BenchmarkFleetVerify is Authenticator.Verify alone among 10,000
// identities: on a data dir a stat, a map lookup and a SHA-256; on a
// bucket, with Run polling, memory only.
//
//	go test ./server -run '^$' -bench FleetVerify -benchtime 20000x
func BenchmarkFleetVerify(b *testing.B) {
	for _, backend := range []string{"dir", "s3"} {
		b.Run(backend, func(b *testing.B) {
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
			id, secret := seedIdentities(b, st, 10000)
			a, err := NewAuthenticator(st.Identities())
			if err != nil {
				b.Fatal(err)
			}
			if backend == "s3" {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { a.Run(ctx, AuthPollInterval, nil); close(done) }()
				b.Cleanup(func() { cancel(); <-done })
				for !a.polled.Load() {
					time.Sleep(time.Millisecond)
				}
			}
			b.ResetTimer()
			for range b.N {
				if _, err := a.Verify(id, secret); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFleetClientsList is what `edgecrd clients ls --name node-99
// --limit 50` and the Clients page do among 10,000 clients: read every
// identity (on a bucket through the identity cache, identitycache.go) and
// last-seen, filter, order by last seen, and `edgecrd token ls` with 100
// tokens. "first" is a process's first read (on a bucket through the
// identity snapshot a serving replica keeps, identitysnapshot.go, and
// once before it is written); "page" a later one in the same process (the
// server's Clients and Tokens pages); "cli" a later run of the command (a
// new process: load the state, the cache file, read, save the cache).
//
//	go test ./server -run '^$' -bench FleetClientsList -benchtime 20x
func BenchmarkFleetClientsList(b *testing.B) {
	b.Logf("load average before: %s", loadAvg())
	for _, backend := range []string{"dir", "s3"} {
		b.Run(backend, func(b *testing.B) {
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
			seedIdentities(b, st, 10000)
			for range 100 {
				if _, _, err := st.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePull}, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			cacheFile := filepath.Join(b.TempDir(), "identities.json")
			clients := func(b *testing.B, st *State) {
				all, err := st.Clients()
				if err != nil {
					b.Fatal(err)
				}
				if page, n := SelectClients(all, ClientQuery{Name: "node-99", Limit: 50}); len(page) != 50 || n != 111 {
					b.Fatalf("%d rows of %d", len(page), n)
				}
			}
			tokens := func(b *testing.B, st *State) {
				if tks, err := st.Tokens(); err != nil || len(tks) != 100 {
					b.Fatalf("%d tokens, %v", len(tks), err)
				}
			}
			// A new process: what a run of the command does.
			process := func(b *testing.B) *State {
				if backend == "dir" {
					st, err := Load(st.Dir)
					if err != nil {
						b.Fatal(err)
					}
					return st
				}
				st, err := LoadS3(context.Background(), st.S3())
				if err != nil {
					b.Fatal(err)
				}
				return st
			}
			if backend == "s3" {
				// Before a serving replica wrote the identity snapshot
				// (identitysnapshot.go), then with it.
				b.Run("clients/first-without-snapshot", func(b *testing.B) {
					for range b.N {
						clients(b, process(b))
					}
				})
				if _, err := st.WriteIdentitySnapshot(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			for _, c := range []struct {
				name string
				read func(*testing.B, *State)
			}{{"clients", clients}, {"tokens", tokens}} {
				b.Run(c.name+"/first", func(b *testing.B) {
					for range b.N {
						c.read(b, process(b))
					}
				})
				b.Run(c.name+"/page", func(b *testing.B) {
					st := process(b)
					c.read(b, st)
					b.ResetTimer()
					for range b.N {
						c.read(b, st)
					}
				})
				b.Run(c.name+"/cli", func(b *testing.B) {
					run := func() {
						st := process(b)
						if err := st.LoadIdentityCache(cacheFile); err != nil {
							b.Fatal(err)
						}
						c.read(b, st)
						if err := st.SaveIdentityCache(cacheFile); err != nil {
							b.Fatal(err)
						}
					}
					run() // the run before, which wrote the cache
					b.ResetTimer()
					for range b.N {
						run()
					}
				})
			}
		})
	}
	b.Logf("load average after: %s", loadAvg())
}
