//go:build unix

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// signalDockerd sends SIGHUP to the dockerd whose pid pidFile holds, after
// checking that the process is a dockerd (a stale pid file must not make
// join signal another process).
func signalDockerd(pidFile, procDir string) (int, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, fmt.Errorf("reading dockerd's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("reading dockerd's pid file %s: %q is not a pid", pidFile, strings.TrimSpace(string(b)))
	}
	comm, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "comm"))
	if err != nil {
		return 0, fmt.Errorf("checking process %d of %s: %w", pid, pidFile, err)
	}
	if c := strings.TrimSpace(string(comm)); c != "dockerd" {
		return 0, fmt.Errorf("process %d of %s is %q, not dockerd", pid, pidFile, c)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return 0, fmt.Errorf("sending dockerd (pid %d) SIGHUP: %w", pid, err)
	}
	return pid, nil
}

// liveDockerdSignal reloads the machine's dockerd (Linux: Docker Desktop
// on macOS runs its daemon in a VM, which join --mirror does not reach).
func liveDockerdSignal(goos string) func() (int, error) {
	if goos != "linux" {
		return nil
	}
	return func() (int, error) {
		pidFile := "/run/docker.pid"
		if _, err := os.Stat(pidFile); err != nil {
			pidFile = dockerPIDFile
		}
		return signalDockerd(pidFile, "/proc")
	}
}

// liveDockerdMirrors asks the machine's dockerd (GET /info on its socket)
// which registry mirrors it uses now.
func liveDockerdMirrors(goos string) func(ctx context.Context) ([]string, error) {
	if goos != "linux" {
		return nil
	}
	return func(ctx context.Context) ([]string, error) {
		c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", "/var/run/docker.sock")
		}}}
		defer c.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/info", nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("asking dockerd for its registry mirrors: %w", err)
		}
		defer resp.Body.Close()
		var info struct{ RegistryConfig struct{ Mirrors []string } }
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info); err != nil {
			return nil, fmt.Errorf("reading dockerd's /info: %w", err)
		}
		return info.RegistryConfig.Mirrors, nil
	}
}
