// Command agentbench measures the client-side commands on loopback: the wall
// time of `docker-credential-edgecr get`, of `edgecr join` into a fresh
// sandboxed root (including the real, relocated update-ca-certificates run),
// of `edgecr status` and of `edgecr leave`, against an edgecrd it starts. It
// prints a markdown report, and with -o puts it at the end of a file
// (docs/benchmarks.md) between agentbench markers, keeping the rest.
//
//	go run ./e2e/agentbench [-n 20] [-o FILE]
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
	"strings"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

func main() { benchutil.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agentbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.IntVar(&cfg.n, "n", 20, "timed runs of each command (after one untimed warm-up run)")
	fs.StringVar(&cfg.cas, "cas", "/usr/share/ca-certificates",
		"distribution CA directory to copy into the second sandbox (Debian layout, with -cas-conf); \"\" measures the one-CA sandbox only")
	fs.StringVar(&cfg.casConf, "cas-conf", "/etc/ca-certificates.conf", "ca-certificates.conf that goes with -cas")
	out := fs.String("o", "", "also write the report into this markdown file (at its end, between agentbench markers; the rest is kept)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fs.Visit(func(f *flag.Flag) { cfg.casSetByFlags = cfg.casSetByFlags || f.Name == "cas" })
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agentbench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if cfg.n < 1 {
		fmt.Fprintf(stderr, "agentbench: -n must be at least 1, got %d\n", cfg.n)
		return 2
	}
	res, err := runBench(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "agentbench:", err)
		return 1
	}
	var b strings.Builder
	report(&b, res, benchutil.CommandLine("agentbench", args))
	io.WriteString(stdout, b.String())
	if *out != "" {
		if err := benchutil.WriteBlock(*out, "agentbench", b.String()); err != nil {
			fmt.Fprintln(stderr, "agentbench:", err)
			return 1
		}
	}
	return 0
}
