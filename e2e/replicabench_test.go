package e2e

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var (
	pullersMiB    = flag.Int("pullers.mib", 64, "BenchmarkReplicaPullers: size of the image in MiB, in 4 layers")
	pullersRounds = flag.Int("pullers.rounds", 3, "BenchmarkReplicaPullers: rounds per replica count (medians are reported)")
)

// pullerCount is the number of concurrent pullers of the benchmark.
const pullerCount = 20

// BenchmarkReplicaPullers is the last benchmark of issue 12: 20
// concurrent pullers, spread round-robin over 1, 2 and 3 replicas of one
// device on one MinIO, each pulling the whole image (manifest and config
// checked against their digests, every layer read to its end, which
// go-containerregistry checks against the layer's digest). It reports the
// aggregate throughput and the CPU seconds each replica and MinIO spent
// per GiB served, from /proc/PID/stat, as medians over the rounds.
//
//	go test ./e2e -run '^$' -bench ReplicaPullers -benchtime 1x
func BenchmarkReplicaPullers(b *testing.B) {
	c := startCluster(b, 3) // skips without the pinned MinIO (fails in CI)
	img, size := pullersImage(b, *pullersMiB)
	want := pushB(b, c, img)
	// One pull through each replica before measuring: what a first pull
	// costs once (state loaded, connections to MinIO) is not the steady
	// state the table is about.
	for i := range c.nodes {
		if _, err := pullAll(c, i, want); err != nil {
			b.Fatal(err)
		}
	}
	// The replicas, MinIO, and this process (the pullers: TLS, digests).
	pids := make([]int, len(c.nodes)+2)
	for i, r := range c.nodes {
		pids[i] = r.cmd.Process.Pid
	}
	pids[len(c.nodes)] = c.minio.Pid()
	pids[len(c.nodes)+1] = os.Getpid()

	load0 := loadAvg()
	var results []pullersResult
	b.ResetTimer()
	for range b.N {
		results = results[:0]
		for n := 1; n <= len(c.nodes); n++ {
			var rounds []pullersRound
			for range *pullersRounds {
				rounds = append(rounds, pullersRun(b, c, n, want, pids))
			}
			results = append(results, summarise(n, rounds))
		}
	}
	b.StopTimer()
	load1 := loadAvg()

	var out strings.Builder
	fmt.Fprintf(&out, "\n%d pullers, image %d MiB in 4 layers (%d bytes with manifest and config), %d rounds per row, medians; load average %s before, %s after\n",
		pullerCount, *pullersMiB, size, *pullersRounds, load0, load1)
	fmt.Fprintf(&out, "| replicas | aggregate | replica 1 CPU/GiB | replica 2 CPU/GiB | replica 3 CPU/GiB | all replicas CPU/GiB | MinIO CPU/GiB | pullers CPU/GiB |\n")
	fmt.Fprintf(&out, "|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&out, "| %d | %.1f MB/s |", r.n, r.mbps)
		for i := range c.nodes {
			if i < r.n {
				fmt.Fprintf(&out, " %.2f s |", r.replica[i])
			} else {
				fmt.Fprintf(&out, " – (idle: %.2f s/round) |", r.replica[i])
			}
		}
		fmt.Fprintf(&out, " %.2f s | %.2f s | %.2f s |\n", r.replicas, r.minio, r.pullers)
		b.ReportMetric(r.mbps, fmt.Sprintf("MB/s-%dreplicas", r.n))
	}
	fmt.Print(out.String())
}

// pullersRound is one measurement: bytes each replica served, the CPU
// time each process used, and the wall time.
type pullersRound struct {
	bytes []int64         // per replica
	cpu   []time.Duration // per replica, then MinIO, then the pullers
	wall  time.Duration
}

// pullersResult is the medians of one replica count's rounds: aggregate
// MB/s, CPU seconds per GiB served by each active replica (CPU seconds
// per round for an idle one), by all replicas together, by MinIO and by
// the pullers.
type pullersResult struct {
	n        int
	mbps     float64
	replica  []float64
	replicas float64
	minio    float64
	pullers  float64
}

func summarise(n int, rounds []pullersRound) pullersResult {
	const gib = 1 << 30
	r := pullersResult{n: n}
	med := func(f func(pullersRound) float64) float64 {
		v := make([]float64, len(rounds))
		for i, rd := range rounds {
			v[i] = f(rd)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	total := func(rd pullersRound) float64 {
		var s int64
		for _, b := range rd.bytes {
			s += b
		}
		return float64(s)
	}
	r.mbps = med(func(rd pullersRound) float64 { return total(rd) / 1e6 / rd.wall.Seconds() })
	nodes := len(rounds[0].bytes)
	for i := range nodes {
		r.replica = append(r.replica, med(func(rd pullersRound) float64 {
			if rd.bytes[i] == 0 {
				return rd.cpu[i].Seconds()
			}
			return rd.cpu[i].Seconds() / (float64(rd.bytes[i]) / gib)
		}))
	}
	r.replicas = med(func(rd pullersRound) float64 {
		var s time.Duration
		for _, c := range rd.cpu[:nodes] {
			s += c
		}
		return s.Seconds() / (total(rd) / gib)
	})
	r.minio = med(func(rd pullersRound) float64 { return rd.cpu[nodes].Seconds() / (total(rd) / gib) })
	r.pullers = med(func(rd pullersRound) float64 { return rd.cpu[nodes+1].Seconds() / (total(rd) / gib) })
	return r
}

// pullersRun starts pullerCount pullers at once, puller k on replica
// k mod n, each with its own connections, and waits for all.
func pullersRun(b *testing.B, c *cluster, n int, want v1.Hash, pids []int) pullersRound {
	rd := pullersRound{bytes: make([]int64, len(c.nodes))}
	perPuller := make([]int64, pullerCount)
	errs := make([]error, pullerCount)
	cpu0 := cpuTimes(b, pids)
	start := time.Now()
	var wg sync.WaitGroup
	for k := range pullerCount {
		wg.Go(func() { perPuller[k], errs[k] = pullAll(c, k%n, want) })
	}
	wg.Wait()
	rd.wall = time.Since(start)
	cpu1 := cpuTimes(b, pids)
	for k, err := range errs {
		if err != nil {
			b.Fatalf("puller %d of %d on %d replicas: %v", k+1, pullerCount, n, err)
		}
		rd.bytes[k%n] += perPuller[k]
	}
	for i := range pids {
		rd.cpu = append(rd.cpu, cpu1[i]-cpu0[i])
	}
	return rd
}

// pullAll pulls the benchmark image through replica i as a fresh client
// would: manifest (digest checked), config (checked by
// go-containerregistry), every layer read to its end (checked against
// its digest at EOF). It returns the bytes received.
func pullAll(c *cluster, i int, want v1.Hash) (int64, error) {
	tr := c.transport()
	defer tr.CloseIdleConnections()
	opts := []remote.Option{remote.WithAuth(&authn.Basic{Username: c.info.Username, Password: c.info.Password}), remote.WithTransport(tr)}
	ref := c.ref(i, "bench/pullers:v1")
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return 0, fmt.Errorf("pulling %s: %w", ref, err)
	}
	if d, err := img.Digest(); err != nil || d != want {
		return 0, fmt.Errorf("pulling %s: digest %v (%v), want %v", ref, d, err, want)
	}
	m, err := img.RawManifest()
	if err != nil {
		return 0, fmt.Errorf("pulling %s: %w", ref, err)
	}
	cf, err := img.RawConfigFile()
	if err != nil {
		return 0, fmt.Errorf("pulling the config of %s: %w", ref, err)
	}
	got := int64(len(m) + len(cf))
	layers, err := img.Layers()
	if err != nil {
		return 0, fmt.Errorf("pulling %s: %w", ref, err)
	}
	for _, l := range layers {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			return 0, fmt.Errorf("pulling layer %s of %s: %w", d, ref, err)
		}
		nb, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return 0, fmt.Errorf("reading layer %s of %s: %w", d, ref, err)
		}
		got += nb
	}
	return got, nil
}

// pullersImage is an OCI image of mib MiB of pseudo-random bytes in 4
// layers stored as they are (nothing to compress), and its size on the
// wire with manifest and config.
func pullersImage(b *testing.B, mib int) (v1.Image, int64) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	rng := rand.NewChaCha8([32]byte{12})
	for range 4 {
		p := make([]byte, mib<<20/4)
		rng.Read(p)
		var err error
		if img, err = mutate.AppendLayers(img, static.NewLayer(p, types.OCIUncompressedLayer)); err != nil {
			b.Fatalf("building the benchmark image: %v", err)
		}
	}
	m, err := img.RawManifest()
	if err != nil {
		b.Fatal(err)
	}
	cf, err := img.RawConfigFile()
	if err != nil {
		b.Fatal(err)
	}
	return img, int64(len(m)+len(cf)) + int64(mib<<20/4*4)
}

func pushB(b *testing.B, c *cluster, img v1.Image) v1.Hash {
	ref := c.ref(0, "bench/pullers:v1")
	if err := remote.Push(ref, img, c.admin()...); err != nil {
		b.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// cpuTimes reads utime+stime of each process from /proc/PID/stat.
func cpuTimes(b *testing.B, pids []int) []time.Duration {
	const clkTck = 100 // USER_HZ, what Linux reports /proc times in
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatalf("reading the CPU time of process %d: %v", pid, err)
		}
		// The command name (field 2) is in parentheses and may hold
		// spaces: count fields after its closing one; utime and stime are
		// fields 14 and 15.
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			b.Fatalf("process %d: /proc stat has %d fields after the name", pid, len(f))
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			b.Fatalf("process %d: parsing utime %q, stime %q of /proc stat", pid, f[11], f[12])
		}
		out[i] = time.Duration(ut+st) * time.Second / clkTck
	}
	return out
}

// loadAvg is the 1-minute load average from /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}
