// Command cpbench measures `edgecr cp` against `crane copy` (the
// go-containerregistry CLI, v0.22.1, built for the run) in the same run:
// both copy one image of -layers random layers of -layer-size between two
// edgecrd instances on loopback TLS, each run into a fresh repository of the
// destination (so that every blob moves), alternating the tools; then
// each copies again onto its first copy (every blob already there). It
// prints a markdown table (median of -runs) and with -o rewrites its block
// in that file (docs/benchmarks.md), between
// <!-- cpbench:begin --> and <!-- cpbench:end -->, keeping the rest.
//
//	go run ./e2e/cpbench [-layers 5] [-layer-size 100MiB] [-runs 3] [-crane PATH] [-o docs/benchmarks.md]
//
// edgecr runs as a client joined to both devices (`edgecr join --root` into
// a sandboxed root, as the e2e tests do) and addresses them by their
// registry names, which resolve through that root's hosts file; crane
// addresses them by 127.0.0.1:port (it pings https first, and the server
// certificate names loopback), trusting a bundle of both device CAs
// (SSL_CERT_FILE) with the admin credential in a DOCKER_CONFIG. Linux only
// (the sandbox's trust store is Debian's update-ca-certificates).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

func main() { benchutil.Main(run) }

// options are the command line.
type options struct {
	layers    int
	layerSize int64
	runs      int
	crane     string
	out       string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cpbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	size := fs.String("layer-size", "100MiB", "size of each layer (B, KiB, MiB, GiB)")
	fs.IntVar(&o.layers, "layers", 5, "layers in the image")
	fs.IntVar(&o.runs, "runs", 3, "copies per tool (the table shows the median)")
	fs.StringVar(&o.crane, "crane", "", "crane binary (default: go install github.com/google/go-containerregistry/cmd/crane@"+craneVersion+" into a temp GOBIN)")
	fs.StringVar(&o.out, "o", "", "also write the report into this markdown file, between the cpbench markers (the rest is kept)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var err error
	if o.layerSize, err = parseSize(*size); err != nil || o.layerSize <= 0 || o.layers <= 0 || o.runs <= 0 || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cpbench: bad arguments (layer size %q: %v)\n", *size, err)
		return 2
	}
	rep, err := bench(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "cpbench:", err)
		return 1
	}
	text := rep.markdown()
	fmt.Fprint(stdout, text)
	if o.out != "" {
		if err := writeBlock(o.out, text); err != nil {
			fmt.Fprintln(stderr, "cpbench:", err)
			return 1
		}
		fmt.Fprintf(stderr, "cpbench: wrote the cpbench block of %s\n", o.out)
	}
	return 0
}
