// Command bench measures edgecrd on loopback TLS: throughput of a large
// blob push and pull, edgecrd's peak RSS during the push, and the latency of
// authenticated GET /v2/ against edgecrd and against distribution with
// htpasswd auth and without auth. It prints a markdown table, and with -o
// updates that table in a file (docs/benchmarks.md).
//
//	go run ./e2e/bench [-edgecrd PATH] [-size 1GiB] [-n 500] [-runs 3] [-proto h2] [-o FILE]
//	go run ./e2e/bench -gc [-edgecrd PATH] [-size 2GiB]
//	go run ./e2e/bench -gc-fleet 10000 [-storage dir|s3] [-edgecrd PATH]
//	go run ./e2e/bench -pullers 5,50 [-storage dir|s3] [-size 100MiB] [-edgecrd PATH]
//	go run ./e2e/bench -compare [-edgecrd PATH] [-zot PATH] [-size 512MiB] [-runs 3] [-n 200] [-o FILE]
//
// -compare runs edgecrd, distribution and zot side by side (compare.go).
//
// A target that is missed is reported as FAIL in the table; the exit status
// is non-zero only when the benchmark could not run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

func main() {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role, os.Args[1:]))
	}
	benchutil.Main(run)
}

// options are the command line.
type options struct {
	edgecrd, size, proto, out string
	storage                   string // -pullers, -gc-fleet: dir or s3
	n, runs                   int
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.edgecrd, "edgecrd", "", "edgecrd binary to run (default: go build ./cmd/edgecrd into a temp dir)")
	fs.StringVar(&o.size, "size", "1GiB", "blob size (B, KiB, MiB, GiB, KB, MB, GB)")
	fs.IntVar(&o.n, "n", 500, "GET /v2/ requests per target")
	fs.IntVar(&o.runs, "runs", 3, "runs of each throughput measurement")
	fs.StringVar(&o.proto, "proto", "http/1.1", "HTTP version for every target: http/1.1 (all edgecrd offers) or h2 (against an edgecrd built with HTTP/2, -edgecrd PATH); -compare measures both unless given")
	fs.StringVar(&o.out, "o", "", "also write the report into this markdown file (between bench markers; the rest is kept)")
	compare := fs.Bool("compare", false, "instead: edgecrd, distribution and zot side by side with the TLS copy limit, HTTP/2 and HTTP/1.1 (compare.go); -size defaults to 512MiB, -n to 200")
	zot := fs.String("zot", defaultZot(), "with -compare: the zot "+zotVersion+" binary (.ci/build-zot builds it)")
	edgecrdB := fs.String("edgecrd-b", "", "with -compare: another edgecrd binary, measured alongside as \"edgecrd B\" (an A/B of a change)")
	requests := fs.Bool("requests", false, "with -compare: print every request of the image push and pull (path, status, time to first byte, new connections and their TLS handshakes) to stderr")
	zotCommit := fs.Bool("zot-commit", false, "with -compare: also run zot with its fsync on (storage commit: true), as durable as edgecrd")
	cost := fs.Int("cost", 5, "with -compare: bcrypt cost of distribution's and zot's htpasswd")
	gc := fs.Bool("gc", false, "instead: time `edgecrd gc` on a store of -size (default 2GiB) and on many small blobs, half of each garbage (gc.go)")
	pullers := fs.String("pullers", "", "instead: these counts of concurrent pullers (5,50) of one image of 10 layers, -size in all (default 100MiB); aggregate throughput and edgecrd RSS (pullers.go)")
	fs.StringVar(&o.storage, "storage", "dir", "with -pullers and -gc-fleet: where edgecrd keeps images, dir (a data dir) or s3 (a bucket on the pinned MinIO, .ci/build-minio or $EDGECR_MINIO)")
	gcFleet := fs.Int("gc-fleet", 0, "instead: `edgecrd gc` on this many tags (10,000: 50,000 blobs) with pushes running meanwhile; time and peak RSS (gcfleet.go)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.storage != "dir" && o.storage != "s3" {
		fmt.Fprintf(stderr, "bench: invalid -storage %q: want dir or s3\n", o.storage)
		return 2
	}
	if *pullers != "" {
		return runPullers(ctx, fs, o, *pullers, args, stdout, stderr)
	}
	if *gcFleet != 0 {
		return runGCFleet(ctx, o, *gcFleet, args, stdout, stderr)
	}
	if *gc {
		return runGC(ctx, fs, o, args, stdout, stderr)
	}
	if *compare {
		return runCompareCmd(ctx, fs, o, compareConfig{zot: *zot, edgecrdB: *edgecrdB, zotCommit: *zotCommit, cost: *cost, requests: *requests}, args, stdout, stderr)
	}
	cfg, err := o.config(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	res, err := runBench(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	var b strings.Builder
	report(&b, res, benchutil.CommandLine("bench", args))
	io.WriteString(stdout, b.String())
	if o.out != "" {
		if err := benchutil.WriteBlock(o.out, "bench", b.String()); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	return 0
}

// config checks the flag combination in one place.
func (o options) config(rest []string) (config, error) {
	if len(rest) > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", rest)
	}
	size, err := parseSize(o.size)
	if err != nil {
		return config{}, err
	}
	if o.n < 1 || o.runs < 1 {
		return config{}, fmt.Errorf("-n and -runs must be at least 1, got %d and %d", o.n, o.runs)
	}
	p, err := parseProto(o.proto)
	if err != nil {
		return config{}, err
	}
	return config{edgecrd: o.edgecrd, size: size, n: o.n, runs: o.runs, proto: p}, nil
}

// parseSize reads "1GiB", "512MiB", "100MB", "4096".
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"b", 1},
	}
	num, mult := strings.ToLower(strings.TrimSpace(s)), int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid -size %q: want a positive byte count such as 1GiB or 500MB", s)
	}
	return n * mult, nil
}

// runCompareCmd is -compare: its own defaults, its own report block.
// cc holds the -compare flags; the common ones are in o.
func runCompareCmd(ctx context.Context, fs *flag.FlagSet, o options, cc compareConfig, args []string, stdout, stderr io.Writer) int {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["size"] {
		o.size = "512MiB"
	}
	if !set["n"] {
		o.n = 200
	}
	cfg, err := o.config(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	protos := []proto{protoH2, protoHTTP1}
	if set["proto"] {
		protos = []proto{cfg.proto}
	}
	cc.edgecrd, cc.size, cc.runs, cc.n, cc.protos = cfg.edgecrd, cfg.size, cfg.runs, cfg.n, protos
	res, err := runCompare(ctx, cc, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	var b strings.Builder
	reportCompare(&b, res, benchutil.CommandLine("bench", args))
	io.WriteString(stdout, b.String())
	if o.out != "" {
		if err := benchutil.WriteBlock(o.out, "bench -compare", b.String()); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	return 0
}
