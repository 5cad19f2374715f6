package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// proto is the HTTP version the benchmark's clients speak; every target is
// measured with the same one.
type proto string

const (
	protoH2    proto = "h2"       // what Go's default transport and crane (go-containerregistry) negotiate over TLS
	protoHTTP1 proto = "http/1.1" // forced, for comparison
)

func parseProto(s string) (proto, error) {
	switch strings.ToLower(s) {
	case "h2", "http2", "http/2":
		return protoH2, nil
	case "http1", "http/1.1", "http1.1", "h1":
		return protoHTTP1, nil
	}
	return "", fmt.Errorf("unknown protocol %q (want h2 or http/1.1)", s)
}

// target is a registry endpoint and the credential to use there (none when
// password is empty).
type target struct {
	base     string // https://host:port
	user     string
	password string
	roots    *x509.CertPool
}

// client talks to one target over at most one connection and counts the
// connections it dials, so that a measurement can prove it kept one alive.
type client struct {
	target
	hc    *http.Client
	dials atomic.Int64
	// imageTransport is for go-containerregistry: the same TLS and HTTP
	// version, without the one-connection limit (it pushes 4 blobs at once).
	imageTransport *http.Transport
	// requests, when set, gets a line per request of an image push or
	// pull (-requests, requestlog.go).
	requests io.Writer
}

func newClient(t target, p proto) *client {
	c := &client{target: t}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: t.roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	var ps http.Protocols
	if p == protoH2 {
		ps.SetHTTP2(true) // and fail rather than fall back if the server does not offer h2
	} else {
		ps.SetHTTP1(true)
	}
	tr.Protocols = &ps
	c.imageTransport = tr.Clone()
	c.imageTransport.MaxConnsPerHost = 0
	c.imageTransport.MaxIdleConnsPerHost = 4
	c.hc = &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a blob redirect would bypass what is measured
		},
	}
	return c
}

func (c *client) close() {
	c.hc.CloseIdleConnections()
	c.imageTransport.CloseIdleConnections()
}

// do sends an authenticated request and checks the status; on a mismatch
// the error carries the start of the body (the registry's error JSON).
func (c *client) do(ctx context.Context, method, url string, body io.Reader, size int64, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, url, err)
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if c.password != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: got %s, want %d: %s", method, url, resp.Status, want, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

// connInfo describes the connection a response came over, e.g.
// "HTTP/2.0, TLS 1.3 TLS_AES_128_GCM_SHA256".
func connInfo(resp *http.Response) string {
	if resp.TLS == nil {
		return resp.Proto + ", no TLS"
	}
	return fmt.Sprintf("%s, %s %s", resp.Proto, tls.VersionName(resp.TLS.Version), tls.CipherSuiteName(resp.TLS.CipherSuite))
}
