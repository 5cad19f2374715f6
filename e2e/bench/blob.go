package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"time"
)

// transfer is one timed blob push or pull.
type transfer struct {
	bytes   int64
	elapsed time.Duration
	conn    string // connInfo of the last response
	digest  string
	// patch and put are a push's PATCH (the body, until the server
	// answered: its fsync included) and PUT ?digest= (the commit).
	patch, put time.Duration
	// serverCPU is the CPU time edgecrd used meanwhile, if known.
	serverCPU   cpuUse
	serverCPUOK bool
	// machineCPU is the busy CPU time of the whole machine meanwhile
	// (every process: the client too), if known.
	machineCPU   time.Duration
	machineCPUOK bool
}

// cpuUse is a process's CPU time in user and kernel mode.
type cpuUse struct{ user, sys time.Duration }

func (t transfer) String() string {
	s := fmt.Sprintf("%.1f MB/s in %v (%s)", t.mbps(), t.elapsed.Round(time.Millisecond), t.conn)
	if t.patch > 0 {
		s += fmt.Sprintf(", PATCH %v, PUT %v", t.patch.Round(time.Millisecond), t.put.Round(100*time.Microsecond))
	}
	if t.serverCPUOK {
		s += fmt.Sprintf(", server CPU user %v sys %v", t.serverCPU.user, t.serverCPU.sys)
	}
	if t.machineCPUOK {
		s += fmt.Sprintf(", machine CPU %v", t.machineCPU)
	}
	return s
}

// mbps is the throughput in MB/s (10^6 bytes per second).
func (t transfer) mbps() float64 { return float64(t.bytes) / t.elapsed.Seconds() / 1e6 }

// push uploads size bytes of the wyrand stream for seed as one blob the
// way crane streams a layer: POST opens an upload session, one PATCH sends
// the whole body, PUT ?digest= commits it. The digest is computed while the
// body is sent, so the blob is never held in memory.
func (c *client) push(ctx context.Context, repo string, seed uint64, size int64) (transfer, error) {
	start := time.Now()
	resp, err := c.do(ctx, http.MethodPost, c.base+"/v2/"+repo+"/blobs/uploads/", nil, 0, http.StatusAccepted)
	if err != nil {
		return transfer{}, fmt.Errorf("opening upload: %w", err)
	}
	drain(resp)
	loc, err := resp.Location()
	if err != nil {
		return transfer{}, fmt.Errorf("reading upload location: %w", err)
	}

	h := sha256.New()
	body := io.TeeReader(io.LimitReader(newWyrand(seed), size), h)
	patchStart := time.Now()
	resp, err = c.do(ctx, http.MethodPatch, loc.String(), body, size, http.StatusAccepted)
	if err != nil {
		return transfer{}, fmt.Errorf("sending blob: %w", err)
	}
	drain(resp)
	patch := time.Since(patchStart)
	if loc, err = resp.Location(); err != nil {
		return transfer{}, fmt.Errorf("reading upload location after PATCH: %w", err)
	}

	digest := sum(h)
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	putStart := time.Now()
	resp, err = c.do(ctx, http.MethodPut, loc.String(), nil, 0, http.StatusCreated)
	if err != nil {
		return transfer{}, fmt.Errorf("committing blob %s: %w", digest, err)
	}
	drain(resp)
	elapsed := time.Since(start)
	put := time.Since(putStart)
	if got := resp.Header.Get("Docker-Content-Digest"); got != digest {
		return transfer{}, fmt.Errorf("committed blob digest mismatch: got %s, want %s", got, digest)
	}
	return transfer{bytes: size, elapsed: elapsed, conn: connInfo(resp), digest: digest, patch: patch, put: put}, nil
}

// pull downloads a blob and checks its size and digest while streaming.
func (c *client) pull(ctx context.Context, repo, digest string, size int64) (transfer, error) {
	start := time.Now()
	resp, err := c.do(ctx, http.MethodGet, c.base+"/v2/"+repo+"/blobs/"+digest, nil, 0, http.StatusOK)
	if err != nil {
		return transfer{}, fmt.Errorf("fetching blob: %w", err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, resp.Body, make([]byte, 256<<10))
	if err != nil {
		return transfer{}, fmt.Errorf("reading blob %s: %w", digest, err)
	}
	elapsed := time.Since(start)
	if n != size {
		return transfer{}, fmt.Errorf("pulled blob size mismatch: got %d bytes, want %d", n, size)
	}
	if got := sum(h); got != digest {
		return transfer{}, fmt.Errorf("pulled blob digest mismatch: got %s, want %s", got, digest)
	}
	return transfer{bytes: n, elapsed: elapsed, conn: connInfo(resp), digest: digest}, nil
}

func sum(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// drain reads the rest of a small response so that its connection is reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}
