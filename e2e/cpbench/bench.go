package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// report is what the run measured.
type report struct {
	date, machine, command  string
	layers                  int
	layerSize, bytes        int64
	runs                    int
	edgecr, crane           []time.Duration // full copies
	edgecrAgain, craneAgain []time.Duration // copies onto a copy
	conn                    string          // protocol and TLS version to the devices
	copied                  int             // blobs edgecr cp reported copied on a full copy
	blobs                   int
}

func bench(ctx context.Context, o options, stderr io.Writer) (*report, error) {
	log := func(format string, args ...any) { fmt.Fprintf(stderr, "cpbench: "+format+"\n", args...) }
	dir, err := os.MkdirTemp("", "edgecr-cpbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b, err := build(ctx, dir, o.crane, log)
	if err != nil {
		return nil, err
	}
	src, err := startDevice(ctx, b, dir, "cpsrc")
	if err != nil {
		return nil, err
	}
	defer src.stop()
	dst, err := startDevice(ctx, b, dir, "cpdst")
	if err != nil {
		return nil, err
	}
	defer dst.stop()
	c, err := newClient(ctx, b, dir, src, dst)
	if err != nil {
		return nil, err
	}

	log("making and pushing the image: %d layers of %s", o.layers, human(o.layerSize))
	img, err := bigImage(o.layers, o.layerSize)
	if err != nil {
		return nil, err
	}
	total, err := imageBytes(img)
	if err != nil {
		return nil, err
	}
	want, err := img.Digest()
	if err != nil {
		return nil, err
	}
	srcAdmin, err := src.admin()
	if err != nil {
		return nil, err
	}
	srcRef, err := ref(src.info.Endpoint + "/bench/big:1")
	if err != nil {
		return nil, err
	}
	if err := remote.Write(srcRef, img, append(srcAdmin, remote.WithContext(ctx))...); err != nil {
		return nil, fmt.Errorf("pushing the image to the source device: %w", err)
	}
	img = nil // the layers' memory goes back before the copies
	runtime.GC()
	dstAdmin, err := dst.admin()
	if err != nil {
		return nil, err
	}
	check := func(repo string) error {
		r, err := ref(dst.info.Endpoint + "/" + repo)
		if err != nil {
			return err
		}
		d, err := remote.Head(r, append(dstAdmin, remote.WithContext(ctx))...)
		if err != nil {
			return fmt.Errorf("checking the copy %s: %w", repo, err)
		}
		if d.Digest != want {
			return fmt.Errorf("the copy %s has digest %s, want %s", repo, d.Digest, want)
		}
		return nil
	}

	conn, err := connection(ctx, dstAdmin, dst)
	if err != nil {
		return nil, err
	}
	rep := &report{conn: conn,
		date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), machine: machine(),
		command: "go run ./e2e/cpbench " + strings.Join(os.Args[1:], " "),
		layers:  o.layers, layerSize: o.layerSize, bytes: total, runs: o.runs, blobs: o.layers + 1,
	}
	edgecrCp := func(repo string) (time.Duration, int, error) {
		cmd := exec.CommandContext(ctx, b.edgecr, "cp", "--root", c.root, "-o", "json", src.info.Endpoint+"/bench/big:1", dst.info.Endpoint+"/"+repo)
		cmd.Env = c.env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		start := time.Now()
		err := cmd.Run()
		took := time.Since(start)
		if err != nil {
			return 0, 0, fmt.Errorf("edgecr cp: %w\n%s", err, errOut.String())
		}
		var res struct{ Copied int }
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			return 0, 0, fmt.Errorf("edgecr cp -o json: %w", err)
		}
		return took, res.Copied, check(repo)
	}
	craneCopy := func(repo string) (time.Duration, error) {
		cmd := exec.CommandContext(ctx, b.crane, "copy", src.addr+"/bench/big:1", dst.addr+"/"+repo)
		cmd.Env = c.craneEnv
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("crane copy: %w\n%s", err, out)
		}
		return took, check(repo)
	}
	for i := range o.runs {
		repoE, repoC := "bench/edgecr-"+strconv.Itoa(i)+":1", "bench/crane-"+strconv.Itoa(i)+":1"
		d, copied, err := edgecrCp(repoE)
		if err != nil {
			return nil, err
		}
		rep.edgecr, rep.copied = append(rep.edgecr, d), copied
		log("run %d: edgecr cp %.2f s (%s, %d blobs copied)", i+1, d.Seconds(), rate(total, d), copied)
		if d, err = craneCopy(repoC); err != nil {
			return nil, err
		}
		rep.crane = append(rep.crane, d)
		log("run %d: crane copy %.2f s (%s)", i+1, d.Seconds(), rate(total, d))
	}
	for i := range o.runs {
		d, copied, err := edgecrCp("bench/edgecr-0:1")
		if err != nil {
			return nil, err
		}
		if copied != 0 {
			return nil, fmt.Errorf("edgecr cp onto its copy copied %d blobs", copied)
		}
		rep.edgecrAgain = append(rep.edgecrAgain, d)
		if d, err = craneCopy("bench/crane-0:1"); err != nil {
			return nil, err
		}
		rep.craneAgain = append(rep.craneAgain, d)
		log("again %d: edgecr cp %.3f s, crane copy %.3f s", i+1, rep.edgecrAgain[i].Seconds(), d.Seconds())
	}
	return rep, nil
}

// connection is the protocol and TLS version a GET /v2/ to d negotiates
// over go-containerregistry's default transport (as both tools use it).
func connection(ctx context.Context, opts []remote.Option, d *device) (string, error) {
	tr, err := d.transport()
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+d.info.Endpoint+"/v2/", nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(d.info.Username, d.info.Password)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("GET /v2/: %w", err)
	}
	resp.Body.Close()
	if resp.TLS == nil {
		return resp.Proto + " without TLS", nil
	}
	return resp.Proto + ", " + tls.VersionName(resp.TLS.Version), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func rate(n int64, d time.Duration) string {
	return fmt.Sprintf("%.1f MB/s", float64(n)/d.Seconds()/1e6)
}
