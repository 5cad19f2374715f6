//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// imageLabel marks every image the tests build (and, inherited, every
// container made from one) with the pid of the test process, so that a
// later run can remove what a killed one left.
const imageLabel = "org.edgecr.e2e.pid"

// dockerCLI runs the docker CLI against the local daemon with a
// DOCKER_CONFIG of its own, so that the user's config.json is not touched.
type dockerCLI struct {
	t      *testing.T
	ctx    context.Context
	Config string // the DOCKER_CONFIG directory
	extra  []string
}

// newDockerCLI needs the docker CLI and a daemon that answers, and returns
// a CLI with an empty DOCKER_CONFIG in a temp dir.
func newDockerCLI(t *testing.T) *dockerCLI {
	t.Helper()
	testenv.NeedCommand(t, "docker", "drives the Docker CLI and daemon")
	c := &dockerCLI{t: t, ctx: testDeadlineCtx(t), Config: t.TempDir()}
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	out, err := rootRun(ctx, c.env(), "", "docker", "info", "--format", "{{.ServerVersion}}")
	testenv.Need(t, err == nil && strings.TrimSpace(out) != "", fmt.Sprintf("no Docker daemon answers `docker info`: %v %s", err, out))
	return c
}

func (c *dockerCLI) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "DOCKER_CONFIG" && k != "DOCKER_BUILDKIT" {
			env = append(env, kv)
		}
	}
	return append(append(env, "DOCKER_CONFIG="+c.Config, "DOCKER_CLI_HINTS=false"), c.extra...)
}

// Run runs `docker args...` with stdin (not logged) and returns the combined
// output; the error carries the command and its output.
func (c *dockerCLI) Run(stdin string, args ...string) (string, error) {
	c.t.Helper()
	start := time.Now()
	out, err := rootRun(c.ctx, c.env(), stdin, "docker", args...)
	c.t.Logf("docker %s: %v, %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), cmpOr(err, "ok"))
	return out, err
}

// Must runs `docker args...` and fails the test with the output on error.
func (c *dockerCLI) Must(args ...string) string {
	c.t.Helper()
	out, err := c.Run("", args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func cmpOr(err error, ok string) string {
	if err != nil {
		s, _, _ := strings.Cut(err.Error(), "\n")
		return s
	}
	return ok
}

// dockerd identifies the local Docker daemon process; a daemon restart
// changes it.
type dockerd struct {
	PID   int
	Start uint64 // start time, clock ticks after boot (/proc/PID/stat field 22)
}

func (d dockerd) String() string {
	return fmt.Sprintf("dockerd pid %d started at tick %d", d.PID, d.Start)
}

// localDockerd finds the daemon (pid file, else the one dockerd process)
// and needs it in this network and mount namespace: otherwise it would
// neither reach the netns device nor read the files the test writes.
func localDockerd(t *testing.T) dockerd {
	t.Helper()
	var pid int
	for _, f := range []string{"/run/docker.pid", "/var/run/docker.pid"} {
		if b, err := os.ReadFile(f); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
	}
	if pid == 0 {
		comms, _ := filepath.Glob("/proc/[0-9]*/comm")
		for _, c := range comms {
			if b, _ := os.ReadFile(c); strings.TrimSpace(string(b)) == "dockerd" {
				pid, _ = strconv.Atoi(filepath.Base(filepath.Dir(c)))
			}
		}
	}
	testenv.Need(t, pid > 0, "no local dockerd process found (pid file or /proc)")
	d := dockerd{PID: pid, Start: procStart(pid)}
	testenv.Need(t, d.Start > 0, fmt.Sprintf("cannot read /proc/%d/stat", pid))
	for _, ns := range []string{"net", "mnt"} {
		theirs, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		ours, err2 := os.Readlink("/proc/self/ns/" + ns)
		testenv.Need(t, err1 == nil && err2 == nil && theirs == ours,
			fmt.Sprintf("dockerd (pid %d) runs in another %s namespace (%s, ours %s)", pid, ns, theirs, ours))
	}
	return d
}

func procStart(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64) // field 22 overall
	return n
}

// scratchImage is an image buildScratchImage made.
type scratchImage struct {
	Ref    string // the tag it was built as
	ID     string // sha256:… image ID: the config digest, the same after a push and pull
	Marker string // the line its entrypoint prints
}

var dockerSweep sync.Once

// buildScratchImage builds a static Go program that prints a random marker
// and makes it the entrypoint of a FROM scratch image tagged tag (no pull
// needed: the daemon never contacts a registry). Cleanup removes the image
// with every tag the test gave it, and containers made from it.
func buildScratchImage(t *testing.T, tag string) scratchImage {
	t.Helper()
	c := newDockerCLI(t) // a config of its own: buildx keeps state there
	dockerSweep.Do(func() { sweepStaleDocker(t, c) })
	testenv.NeedCommand(t, "go", "builds the image's program")
	nonce := randomHex(8)
	img := scratchImage{Ref: tag, Marker: "edgecr-e2e-ok " + nonce}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":  "module hello\n\ngo 1.22\n",
		"main.go": fmt.Sprintf("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(%q) }\n", img.Marker),
		"Dockerfile": fmt.Sprintf("FROM scratch\nCOPY hello /hello\nLABEL %s=%d org.edgecr.e2e.nonce=%s\nENTRYPOINT [\"/hello\"]\n",
			imageLabel, os.Getpid(), nonce),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	arch := strings.TrimSpace(c.Must("version", "--format", "{{.Server.Arch}}"))
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=", "GOWORK=off")
	build := exec.CommandContext(c.ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "hello", ".")
	build.Dir, build.Env = dir, env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the image's program: %v\n%s", err, indent(string(out)))
	}
	if _, err := c.Run("", "buildx", "version"); err != nil {
		c.extra = append(c.extra, "DOCKER_BUILDKIT=0") // the classic builder, as on a daemon without BuildKit
	}
	onUndo(t, "image "+tag, func(logf func(string, ...any)) error { return removeScratchImage(c, nonce, logf) })
	c.Must("build", "-t", tag, dir)
	img.ID = strings.TrimSpace(c.Must("image", "inspect", "--format", "{{.Id}}", tag))
	return img
}

// removeScratchImage removes the containers and the image (all tags) that
// carry the nonce; it runs after the test's context has ended, maybe on a
// signal.
func removeScratchImage(c *dockerCLI, nonce string, logf func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	docker := func(args ...string) string {
		out, err := rootRun(ctx, c.env(), "", "docker", args...)
		errs = append(errs, err)
		return out
	}
	filter := "label=org.edgecr.e2e.nonce=" + nonce
	if ids := strings.Fields(docker("ps", "-aq", "--filter", filter)); len(ids) > 0 {
		docker(append([]string{"rm", "-f"}, ids...)...)
	}
	for _, id := range uniqueFields(docker("images", "-q", "--no-trunc", "--filter", filter)) {
		tags := docker("image", "inspect", "--format", "{{join .RepoTags \" \"}}", id)
		docker("rmi", "-f", id)
		logf("removed image %s (tags: %s)", id, strings.TrimSpace(tags))
	}
	return errors.Join(errs...)
}

// sweepStaleDocker removes containers and images that test processes which
// are no longer running left behind.
func sweepStaleDocker(t *testing.T, c *dockerCLI) {
	t.Helper()
	stale := func(kind string, ids []string) []string {
		var out []string
		for _, id := range ids {
			format := "{{index .Config.Labels \"" + imageLabel + "\"}}"
			v, err := c.Run("", kind, "inspect", "--format", format, id)
			pid, _ := strconv.Atoi(strings.TrimSpace(v))
			if err == nil && pid > 0 && pid != os.Getpid() && !processAlive(pid) {
				out = append(out, id)
			}
		}
		return out
	}
	filter := "label=" + imageLabel
	if ids := stale("container", strings.Fields(c.Must("ps", "-aq", "--filter", filter))); len(ids) > 0 {
		t.Logf("removing containers left by killed runs: %v", ids)
		c.Must(append([]string{"rm", "-f"}, ids...)...)
	}
	if ids := stale("image", uniqueFields(c.Must("images", "-q", "--no-trunc", "--filter", filter))); len(ids) > 0 {
		t.Logf("removing images left by killed runs: %v", ids)
		c.Must(append([]string{"rmi", "-f"}, ids...)...)
	}
}

// uniqueFields splits `docker images -q` output: one line per tag, so an
// image with two tags is listed twice.
func uniqueFields(s string) []string {
	f := strings.Fields(s)
	slices.Sort(f)
	return slices.Compact(f)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

var pushDigest = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64}) size: \d+`)

// TestDockerPushPullRunManualProcedure is the vendor's manual procedure
// against a device on a non-loopback address (so Docker verifies TLS): hosts
// line, CA in /etc/docker/certs.d, docker login, then push, rmi, pull, run
// of a FROM scratch image, without restarting Docker; and first, that Docker
// refuses the device while it does not trust its CA, also under the same
// name as an impostor. Afterwards /etc/hosts, the trust store, certs.d and
// config.json are byte for byte as before.
func TestDockerPushPullRunManualProcedure(t *testing.T) {
	testenv.NeedRoot(t, "writes /etc/hosts and /etc/docker/certs.d, makes a network namespace")
	testenv.NeedCommand(t, "ip", "makes the network namespace the device runs in")
	dk := newDockerCLI(t)
	daemon := localDockerd(t)
	var timings []string
	step := func(name string, start time.Time) {
		timings = append(timings, fmt.Sprintf("%-44s %8v", name, time.Since(start).Round(time.Millisecond)))
	}
	testStart := time.Now()

	snap := snapshotSystem(t)

	start := time.Now()
	img := buildScratchImage(t, "edgecr-e2e/hello:"+randomHex(4))
	step("build FROM scratch image", start)

	const host = "ecr.e2e.internal"
	endpoint := fmt.Sprintf("%s:%d", host, devicePort)
	ref := endpoint + "/e2e/hello:1"
	dk.Must("tag", img.Ref, ref)

	// An impostor answers under the registry's name with a CA of its own.
	start = time.Now()
	impostor := netnsDevice(t, "")
	step("netns device up (impostor)", start)
	if impostor.info.Endpoint != endpoint {
		t.Fatalf("device endpoint %s, want %s", impostor.info.Endpoint, endpoint)
	}
	if b, _ := os.ReadFile(hostsPath); strings.Contains(string(b), host) {
		t.Fatalf("%s already mentions %s:\n%s", hostsPath, host, indent(string(b)))
	}
	hosts := appendHostsLine(t, impostor.IP+" "+host)
	if out, err := rootRun(dk.ctx, nil, "", "getent", "hosts", host); err != nil || !strings.HasPrefix(out, impostor.IP+" ") {
		t.Fatalf("%s does not resolve to %s after the hosts line: %v\n%s", host, impostor.IP, err, indent(out))
	}

	wantX509 := func(what, out string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(out, "x509") || !strings.Contains(out, "unknown authority") {
			t.Fatalf("%s: want an x509 unknown-authority error, got %v:\n%s", what, err, indent(out))
		}
		t.Logf("%s: refused as it should be:\n%s", what, indent(out))
	}
	// 1. Nothing in certs.d: Docker verifies against the system roots only.
	start = time.Now()
	out, err := dk.Run("", "push", ref)
	wantX509("push with no CA in certs.d", out, err)
	step("push refused, no CA (x509)", start)

	// 2. The real device's CA in certs.d while the impostor answers.
	realData := filepath.Join(t.TempDir(), "data")
	if _, e, err := edgecrd(t, "init", "--data-dir", realData, "--name", "e2e", "--ip", impostor.IP, "--listen", fmt.Sprintf(":%d", devicePort)); err != nil {
		t.Fatalf("edgecrd init: %v\n%s", err, indent(e))
	}
	realCA, err := os.ReadFile(filepath.Join(realData, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if impCA, _ := os.ReadFile(impostor.info.CAFile); string(impCA) == string(realCA) {
		t.Fatal("the impostor has the real device's CA")
	}
	infoOut, e, err := edgecrd(t, "info", "--data-dir", realData, "-o", "json")
	if err != nil {
		t.Fatalf("edgecrd info: %v\n%s", err, indent(e))
	}
	var realInfo deviceInfo
	if err := json.Unmarshal([]byte(infoOut), &realInfo); err != nil {
		t.Fatal(err)
	}
	certs := installDockerCA(t, endpoint, realCA)
	start = time.Now()
	out, err = dk.Run(realInfo.Password+"\n", "login", endpoint, "-u", realInfo.Username, "--password-stdin")
	wantX509("login to the impostor with the real CA in certs.d", out, err)
	out, err = dk.Run("", "push", ref)
	wantX509("push to the impostor with the real CA in certs.d", out, err)
	step("login+push refused, impostor (x509)", start)
	if strings.Contains(impostor.Logs(), `"msg":"request"`) {
		t.Errorf("an HTTP request reached the impostor:\n%s", indent(impostor.Logs()))
	}
	start = time.Now()
	impostor.Close()
	step("impostor namespace removed", start)

	// The real device, at the same address.
	start = time.Now()
	dev := netnsDevice(t, realData)
	step("netns device up (real)", start)
	if dev.IP != impostor.IP || dev.info.CAFingerprint != realInfo.CAFingerprint {
		t.Fatalf("real device at %s with CA %s, want %s with %s", dev.IP, dev.info.CAFingerprint, impostor.IP, realInfo.CAFingerprint)
	}

	start = time.Now()
	out, err = dk.Run(dev.info.Password+"\n", "login", endpoint, "-u", dev.info.Username, "--password-stdin")
	if err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("docker login: %v\n%s", err, indent(out))
	}
	step("docker login", start)
	if strings.Contains(out, dev.info.Password) {
		t.Error("docker login printed the password")
	}
	cfg, err := os.ReadFile(filepath.Join(dk.Config, "config.json"))
	if err != nil || !strings.Contains(string(cfg), endpoint) {
		t.Fatalf("temp DOCKER_CONFIG has no entry for %s: %v\n%s", endpoint, err, cfg)
	}

	start = time.Now()
	out = dk.Must("push", ref)
	step("docker push", start)
	m := pushDigest.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no digest in docker push output:\n%s", indent(out))
	}
	// The device holds exactly what Docker says it pushed.
	req, _ := http.NewRequestWithContext(dk.ctx, "HEAD", "https://"+dev.addr+"/v2/e2e/hello/manifests/1", nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	req.SetBasicAuth(dev.info.Username, dev.info.Password)
	resp, err := (&http.Client{Transport: dev.transport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode != 200 || got != m[1] {
		t.Fatalf("HEAD manifest on the device: %s, digest %q; docker push said %s", resp.Status, got, m[1])
	}

	// Remove every local copy, so that the pull really downloads.
	start = time.Now()
	dk.Must("rmi", ref)
	dk.Must("rmi", img.Ref)
	if out, err := dk.Run("", "image", "inspect", img.ID); err == nil {
		t.Fatalf("image %s still present after rmi:\n%s", img.ID, indent(out))
	}
	step("docker rmi (both tags, image gone)", start)

	start = time.Now()
	out = dk.Must("pull", ref)
	step("docker pull", start)
	if !strings.Contains(out, "Downloaded newer image") || !strings.Contains(out, m[1]) {
		t.Fatalf("docker pull did not download %s:\n%s", m[1], indent(out))
	}
	if id := strings.TrimSpace(dk.Must("image", "inspect", "--format", "{{.Id}}", ref)); id != img.ID {
		t.Fatalf("pulled image ID %s, built %s", id, img.ID)
	}

	start = time.Now()
	out = dk.Must("run", "--rm", "--network", "none", ref)
	step("docker run --rm", start)
	if !strings.Contains(out, img.Marker) {
		t.Fatalf("docker run printed %q, want %q", out, img.Marker)
	}

	if now := localDockerd(t); now != daemon {
		t.Fatalf("the Docker daemon restarted: was %v, now %v", daemon, now)
	}
	t.Logf("no Docker restart: %v throughout", daemon)

	// Undo the manual steps the way the procedure would, then check.
	start = time.Now()
	dk.Must("logout", endpoint)
	dk.Must("rmi", ref)
	if err := errors.Join(certs.run(t.Logf), hosts.run(t.Logf)); err != nil {
		t.Fatalf("undoing the manual steps: %v", err)
	}
	dev.Close()
	step("undo (logout, rmi, certs.d, hosts, netns)", start)
	snap.Verify(t)
	step("total", testStart)
	t.Logf("timings:\n%s", indent(strings.Join(timings, "\n")))
}
