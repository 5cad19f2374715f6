package benchutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// LogTail is the end of the edgecrd log at path, for error messages.
func LogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return "(edgecrd log is empty)"
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "edgecrd log (tail):\n" + strings.TrimSpace(string(b))
}

// FreePort asks the kernel for a free loopback port. Another process can
// take it before edgecrd binds it; starting edgecrd then fails with its log.
func FreePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	return port, nil
}

// AwaitHealthz polls url (edgecrd's https://ADDR/healthz, without checking
// its certificate: only a readiness probe) every 50 ms until it answers 200
// OK, edgecrd exits (exited is closed; waitErr then says how) or ctx ends.
// where names edgecrd's address in the error.
func AwaitHealthz(ctx context.Context, url, where string, exited <-chan struct{}, waitErr func() error) error {
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer probe.CloseIdleConnections()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("building health probe: %w", err)
		}
		if resp, err := probe.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("edgecrd exited before it was ready: %v", waitErr())
		case <-ctx.Done():
			return fmt.Errorf("waiting for edgecrd on %s: %w", where, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
