// Command syncbench measures sync and pull-through (issue 15) between two
// edgecrd instances in this process, on loopback TLS: an upstream holding
// -images random images (one layer of -size each) and a device.
//
//	go run ./e2e/syncbench [-images 10] [-size 10MiB] [-rate off]
//
// It prints a markdown table: one sync run of every image (Server.Sync,
// what `edgecrd sync run` does) against go-containerregistry's crane.Copy
// of the same images in a loop (what `crane copy` runs) and agent's
// Images.Copy in a loop (what `edgecr cp` runs), each into a device of its
// own (so that none finds blobs another tool brought); a second sync run
// (nothing to copy); the upstream requests per synced blob; and a
// pull-through first pull of each image against a direct pull from the
// upstream.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/server"
	"github.com/edgecr/edgecr/server/mirror"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	images := flag.Int("images", 10, "images on the upstream")
	size := flag.String("size", "10MiB", "layer size of each image")
	rate := flag.String("rate", "off", "--sync-rate for the sync runs")
	flag.Parse()
	n, err := server.ParseSize(*size)
	if err == nil {
		err = run(context.Background(), *images, n, *size, *rate, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "syncbench:", err)
		os.Exit(1)
	}
}

// instance is an edgecrd running in this process.
type instance struct {
	srv  *server.Server
	st   *server.State
	addr string
	pw   string
}

func start(ctx context.Context, dir, devName string, cfg *mirror.Config, rate int64) (*instance, error) {
	st, err := server.Ensure(dir, server.InitOptions{Name: &devName, IPs: []net.IP{net.ParseIP("127.0.0.1")},
		DefaultIPs: func() ([]net.IP, error) { return nil, nil }}, time.Now())
	if err != nil {
		return nil, err
	}
	srv, err := server.New(ctx, st, server.Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Sync: cfg, SyncRate: rate})
	if err != nil {
		return nil, err
	}
	go srv.Serve(ctx)
	pw, err := st.AdminPassword()
	if err != nil {
		return nil, err
	}
	return &instance{srv: srv, st: st, addr: srv.Addr().String(), pw: pw}, nil
}

func run(ctx context.Context, count int, size int64, sizeFlag, rateFlag string, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tmp, err := os.MkdirTemp("", "syncbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rate, err := mirror.ParseRate(rateFlag)
	if err != nil {
		return err
	}
	up, err := start(ctx, filepath.Join(tmp, "up"), "up", nil, 0)
	if err != nil {
		return err
	}
	caFile, credFile := filepath.Join(tmp, "ca.pem"), filepath.Join(tmp, "cred")
	os.WriteFile(caFile, up.st.CA.PEM, 0o600)
	os.WriteFile(credFile, []byte("admin:"+up.pw+"\n"), 0o600)
	cfg, err := mirror.Parse(fmt.Appendf(nil, `upstreams:
  - {name: up, url: "https://%s", credentials: {file: %s}, ca: %s}
rules:
  - {name: all, upstream: up, repositories: ["bench/*"], destination: sync}
pullThrough:
  - {prefix: cache, upstream: up}
`, up.addr, credFile, caFile))
	if err != nil {
		return err
	}
	dev, err := start(ctx, filepath.Join(tmp, "dev"), "dev", cfg, rate)
	if err != nil {
		return err
	}
	devCrane, err := start(ctx, filepath.Join(tmp, "dev-crane"), "dev-crane", nil, 0)
	if err != nil {
		return err
	}
	devCp, err := start(ctx, filepath.Join(tmp, "dev-cp"), "dev-cp", nil, 0)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	for _, i := range []*instance{up, dev, devCrane, devCp} {
		pool.AppendCertsFromPEM(i.st.CA.PEM)
	}
	kc := keychain{up.addr: up.pw, dev.addr: dev.pw, devCrane.addr: devCrane.pw, devCp.addr: devCp.pw}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	auth := func(i *instance) remote.Option {
		return remote.WithAuth(&authn.Basic{Username: "admin", Password: i.pw})
	}

	fmt.Fprintf(os.Stderr, "syncbench: pushing %d images of %s to the upstream\n", count, server.FormatSize(size))
	for i := range count {
		img, err := random.Image(size, 1)
		if err != nil {
			return err
		}
		ref, _ := name.ParseReference(fmt.Sprintf("%s/bench/img%02d:1.0.%d", up.addr, i, i))
		if err := remote.Write(ref, img, auth(up), remote.WithTransport(tr)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
	}
	total := float64(count) * float64(size)
	mbps := func(d time.Duration) string { return fmt.Sprintf("%.1f MB/s", total/1e6/d.Seconds()) }

	// crane copy, in a loop.
	t0 := time.Now()
	for i := range count {
		src := fmt.Sprintf("%s/bench/img%02d:1.0.%d", up.addr, i, i)
		dst := fmt.Sprintf("%s/bench/img%02d:1.0.%d", devCrane.addr, i, i)
		if err := crane.Copy(src, dst, crane.WithTransport(tr), crane.WithAuthFromKeychain(kc)); err != nil {
			return fmt.Errorf("crane copy %s: %w", src, err)
		}
	}
	craneT := time.Since(t0)

	// edgecr cp, in a loop: a client that joined nothing, reaching both
	// registries with the admin credentials.
	client := &agent.System{State: agent.NewStateFile(filepath.Join(tmp, "client", "state.json")), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	im, err := client.Images(agent.ImagesOptions{Keychain: kc, Transport: tr})
	if err != nil {
		return err
	}
	t0 = time.Now()
	for i := range count {
		src, _ := name.ParseReference(fmt.Sprintf("%s/bench/img%02d:1.0.%d", up.addr, i, i))
		dst, _ := name.ParseReference(fmt.Sprintf("%s/bench/img%02d:1.0.%d", devCp.addr, i, i))
		if _, err := im.Copy(ctx, src, dst, agent.CopyOptions{}); err != nil {
			return fmt.Errorf("edgecr cp %s: %w", src, err)
		}
	}
	cpT := time.Since(t0)

	// Sync, then again.
	before := dev.srv.SyncUpstreamRequests("up")
	t0 = time.Now()
	rep, err := dev.srv.Sync(ctx, mirror.RunOptions{})
	if err != nil {
		return err
	}
	syncT := time.Since(t0)
	if rep.Failed() || rep.Count(mirror.OutcomeCopied) != count {
		return fmt.Errorf("sync run: %d copied, errors %v", rep.Count(mirror.OutcomeCopied), rep.Errors)
	}
	reqs := dev.srv.SyncUpstreamRequests("up") - before
	blobs := 0
	for _, it := range rep.Items {
		blobs += it.Blobs
	}
	before = dev.srv.SyncUpstreamRequests("up")
	t0 = time.Now()
	rep2, err := dev.srv.Sync(ctx, mirror.RunOptions{})
	if err != nil {
		return err
	}
	sync2T := time.Since(t0)
	reqs2 := dev.srv.SyncUpstreamRequests("up") - before

	// Pull-through first pull against a direct pull, alternating.
	pull := func(ref string, i *instance) error {
		r, err := name.ParseReference(ref)
		if err != nil {
			return err
		}
		img, err := remote.Image(r, auth(i), remote.WithTransport(tr))
		if err != nil {
			return err
		}
		ls, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range ls {
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	var direct, through time.Duration
	for i := range count {
		t0 = time.Now()
		if err := pull(fmt.Sprintf("%s/bench/img%02d:1.0.%d", up.addr, i, i), up); err != nil {
			return err
		}
		direct += time.Since(t0)
		t0 = time.Now()
		if err := pull(fmt.Sprintf("%s/cache/bench/img%02d:1.0.%d", dev.addr, i, i), dev); err != nil {
			return fmt.Errorf("pull-through: %w", err)
		}
		through += time.Since(t0)
	}

	fmt.Fprintf(out, "- Date: %s\n- Machine: nproc %d, %s/%s, %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(out, "- Command: `go run ./e2e/syncbench -images %d -size %s -rate %s`\n", count, sizeFlag, rateFlag)
	fmt.Fprintf(out, "- %d images of one %s layer each (%s), edgecrd → edgecrd in one process on 127.0.0.1, TLS\n\n", count, server.FormatSize(size), server.FormatSize(int64(total)))
	fmt.Fprintf(out, "| What | Time | Throughput |\n|---|---|---|\n")
	fmt.Fprintf(out, "| crane.Copy of each image, in a loop | %.2f s | %s |\n", craneT.Seconds(), mbps(craneT))
	fmt.Fprintf(out, "| agent Images.Copy (`edgecr cp`) of each image, in a loop | %.2f s | %s |\n", cpT.Seconds(), mbps(cpT))
	fmt.Fprintf(out, "| one sync run of the same images | %.2f s | %s |\n", syncT.Seconds(), mbps(syncT))
	fmt.Fprintf(out, "| second sync run (%d skipped, %d copied) | %.2f s | |\n", rep2.Count(mirror.OutcomeSkipped), rep2.Count(mirror.OutcomeCopied), sync2T.Seconds())
	fmt.Fprintf(out, "| direct pulls from the upstream | %.2f s | %s |\n", direct.Seconds(), mbps(direct))
	fmt.Fprintf(out, "| pull-through first pulls through the device | %.2f s | %s |\n\n", through.Seconds(), mbps(through))
	fmt.Fprintf(out, "Sync / crane copy time: **%.2f×**. Sync / edgecr cp time: **%.2f×**. Pull-through first pull / direct pull: **%.2f×**.\n", syncT.Seconds()/craneT.Seconds(), syncT.Seconds()/cpT.Seconds(), through.Seconds()/direct.Seconds())
	fmt.Fprintf(out, "Upstream requests: first run %d for %d blobs sent (%.2f per blob, all requests counted: ping, tag lists, catalog, manifest HEAD/GET, blob GET, referrers); second run %d (%.1f per image).\n",
		reqs, blobs, float64(reqs)/float64(max(blobs, 1)), reqs2, float64(reqs2)/float64(count))
	return nil
}

// keychain answers the admin credential of each instance by address.
type keychain map[string]string

func (k keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if pw, ok := k[strings.ToLower(r.RegistryStr())]; ok {
		return &authn.Basic{Username: "admin", Password: pw}, nil
	}
	return authn.Anonymous, nil
}
