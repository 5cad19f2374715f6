package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server"
)

// freePort is a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serveInBackground runs `edgecrd serve` in this process until the test
// ends, and waits until it owns the data dir and listens.
func serveInBackground(t *testing.T, dir string, port int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data-dir", dir, "--name", "box1", "--ip", "198.18.0.20",
			"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--ui-listen", "off", "--gc-schedule", "off"},
			streams{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("first serve exited %d", code)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("serve exited %d before listening", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve does not listen")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveBriefly runs a serve that should be refused; one that is not stops
// after 5 s (exit 0) instead of hanging the test.
func serveBriefly(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errb strings.Builder
	code := run(ctx, args, streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// The issue: a second serve with another --listen started, and rewrote the
// port in device.json, so token create printed a join line for a port
// nothing listened on.
func TestSecondServeOnADataDirIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p1, p2 := freePort(t), freePort(t)
	serveInBackground(t, dir, p1)
	device := func() string {
		b, err := os.ReadFile(filepath.Join(dir, "device.json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cert := func() string { b, _ := os.ReadFile(filepath.Join(dir, "server.crt")); return string(b) }
	before, beforeCert := device(), cert()
	who := fmt.Sprintf("in use by edgecrd serve (pid %d)", os.Getpid())

	code, _, stderr := serveBriefly(t, "serve", "--data-dir", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", p2), "--ui-listen", "off")
	if code == 0 || !strings.Contains(stderr, who) {
		t.Fatalf("second serve: exit %d, stderr %q; want a refusal naming %q", code, stderr, who)
	}
	for _, args := range [][]string{
		{"--listen", fmt.Sprintf(":%d", p2)},
		{"--ip", "198.18.0.21"},
	} {
		code, _, stderr = edgecrd(t, append([]string{"init", "--data-dir", dir}, args...)...)
		if code == 0 || !strings.Contains(stderr, who) || !strings.Contains(stderr, "device.json") {
			t.Fatalf("init %v while serving: exit %d, stderr %q; want a refusal naming the serve and device.json", args, code, stderr)
		}
	}
	// A new name is refused before the lock is even asked: the device CA
	// is constrained to its name (the serve's lock would refuse it too).
	if code, _, stderr := edgecrd(t, "init", "--data-dir", dir, "--name", "box2"); code == 0 || !strings.Contains(stderr, "cannot change without a new CA") {
		t.Fatalf("init --name box2 while serving: exit %d, stderr %q; want a refusal", code, stderr)
	}
	if device() != before || cert() != beforeCert {
		t.Fatal("a refused command changed device.json or server.crt")
	}
	// What changes nothing keeps working next to the running serve.
	for _, args := range [][]string{
		{"init"}, {"init", "--ip", "198.18.0.20", "--name", "box1"}, {"info"}, {"clients", "ls"}, {"token", "ls"},
	} {
		if code, _, stderr := edgecrd(t, append(args, "--data-dir", dir)...); code != 0 {
			t.Fatalf("%v while serving: exit %d: %s", args, code, stderr)
		}
	}
	code, out, stderr := edgecrd(t, "token", "create", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, fmt.Sprintf(":%d --token", p1)) {
		t.Fatalf("token create: exit %d, %s%s; want the join line for port %d", code, out, stderr, p1)
	}
	if device() != before {
		t.Fatal("device.json changed")
	}
}

// Another process holds the data dir: serve and a changing init name its
// pid; once it exits, serve starts.
func TestDataDirLockAcrossProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, stderr := edgecrd(t, "init", "--data-dir", dir, "--name", "box1", "--ip", "198.18.0.20"); code != 0 {
		t.Fatal(stderr)
	}
	holder := exec.Command(os.Args[0])
	holder.Env = append(os.Environ(), "EDGECRD_TEST_HOLD_DIR="+dir)
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); holder.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("holder: %q, %v", line, err)
	}
	who := fmt.Sprintf("in use by edgecrd serve (pid %d)", holder.Process.Pid)
	port := freePort(t)
	serveArgs := []string{"serve", "--data-dir", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--ui-listen", "off"}
	code, _, stderr := serveBriefly(t, serveArgs...)
	if code == 0 || !strings.Contains(stderr, who) {
		t.Fatalf("serve next to another process: exit %d, %q; want %q", code, stderr, who)
	}
	code, _, stderr = edgecrd(t, "init", "--data-dir", dir, "--listen", fmt.Sprintf(":%d", port))
	if code == 0 || !strings.Contains(stderr, who) {
		t.Fatalf("init --listen next to serve: exit %d, %q; want %q", code, stderr, who)
	}
	stdin.Close()
	if err := holder.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	if code, _, stderr := edgecrd(t, "init", "--data-dir", dir, "--listen", fmt.Sprintf(":%d", port)); code != 0 {
		t.Fatalf("init after the holder exited: %s", stderr)
	}
}

// TestMain doubles as the other process of TestDataDirLockAcrossProcesses:
// with $EDGECRD_TEST_HOLD_DIR it holds that data dir as serve does until
// its stdin closes; with $EDGECRD_TEST_RUN it is edgecrd (runFromEnv).
func TestMain(m *testing.M) {
	if code, ok := runFromEnv(); ok {
		os.Exit(code)
	}
	if dir := os.Getenv("EDGECRD_TEST_HOLD_DIR"); dir != "" {
		lock, err := server.LockDataDir(dir, "serve")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin)
		lock.Unlock()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
