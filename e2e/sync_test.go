//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecr/edgecr/internal/ocitest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// syncUpstream is an edgecrd in a network namespace of its own (its own CA,
// admin credentials), the upstream a device on loopback syncs from over
// the veth; "the uplink is down" is the host end of that veth taken down.
type syncUpstream struct {
	*nsDevice
	cred string // file: admin:<password>
}

func newSyncUpstream(t *testing.T) *syncUpstream {
	t.Helper()
	up := &syncUpstream{nsDevice: netnsDevice(t, "")}
	up.cred = filepath.Join(t.TempDir(), "cred")
	if err := os.WriteFile(up.cred, []byte("admin:"+up.info.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return up
}

func (u *syncUpstream) config(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sync.yaml")
	y := fmt.Sprintf("upstreams:\n  - name: up\n    url: https://%s\n    credentials: {file: %s}\n    ca: %s\n", u.addr, u.cred, u.info.CAFile) + body
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// link sets the upstream's veth (host end) up or down. While it is down
// an unreachable route for the upstream's address keeps its packets from
// the default route (which would carry them off this machine).
func (u *syncUpstream) link(t *testing.T, state string) {
	t.Helper()
	block := []string{"route", "add", "unreachable", u.IP + "/32"}
	if state == "down" {
		if _, err := ipCmd(block...); err != nil {
			t.Fatalf("ip %s: %v", strings.Join(block, " "), err)
		}
		t.Cleanup(func() { ipCmd("route", "del", "unreachable", u.IP+"/32") })
	}
	if _, err := ipCmd("link", "set", u.HostIf, state); err != nil {
		t.Fatalf("ip link set %s %s: %v", u.HostIf, state, err)
	}
	if state == "up" {
		if _, err := ipCmd("route", "del", "unreachable", u.IP+"/32"); err != nil {
			t.Fatalf("ip route del unreachable %s/32: %v", u.IP, err)
		}
	}
	t.Logf("uplink %s: %s", u.HostIf, state)
}

// labelled is a random linux/amd64 image with layers of size bytes,
// labelled for the e2e sweeper of Docker images.
func labelled(t *testing.T, size int64, layers int64, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Labels = map[string]string{imageLabel: strconv.Itoa(os.Getpid())}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func (u *syncUpstream) pushIndex(t *testing.T, repo, tag string) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		adds = append(adds, mutate.IndexAddendum{Add: labelled(t, 4096, 2, arch), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	if err := remote.WriteIndex(u.ref(t, repo+":"+tag), idx, u.remote()...); err != nil {
		t.Fatalf("pushing %s:%s upstream: %v", repo, tag, err)
	}
	return idx
}

func edgecrdSync(t *testing.T, dev *device, cfg string, extra ...string) (string, error) {
	t.Helper()
	start := time.Now()
	out, errOut, err := edgecrd(t, append([]string{"sync", "run", "--data-dir", dev.dataDir, "--sync-config", cfg}, extra...)...)
	t.Logf("edgecrd sync run %s (%v, %v):\n%s%s", strings.Join(extra, " "), time.Since(start).Round(time.Millisecond), cmpOr(err, "ok"), indent(out), indent(errOut))
	return out, err
}

// Acceptance 1 and 3 of issue 15, with the upstream behind a veth (its
// own CA, admin credentials).
func TestSyncFromNamespacedUpstream(t *testing.T) {
	up := newSyncUpstream(t)
	want := map[string]v1.Hash{}
	for _, repo := range []string{"team/web", "team/api"} {
		for _, tag := range []string{"1.3.0", "1.4.1", "2.0.0"} {
			idx := up.pushIndex(t, repo, tag)
			d, _ := idx.Digest()
			if tag == "1.4.1" {
				want[repo] = d
				desc, _ := ocitest.Descriptor(idx)
				art, err := ocitest.Artifact(desc, "application/vnd.example.sbom", "application/vnd.example.sbom.payload", []byte("sbom of "+d.String()))
				if err != nil {
					t.Fatal(err)
				}
				ad, _ := art.Digest()
				if err := remote.Write(up.ref(t, repo+"@"+ad.String()), art, up.remote()...); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cfg := up.config(t, `rules:
  - name: team
    upstream: up
    repositories: [team/web, team/api]
    tags: {semver: ">=1.4 <2"}
    platforms: [linux/arm64]
    referrers: true
    schedule: every@1h
  - name: big
    upstream: up
    repositories: [big/app]
`)
	dev := startDevice(t, "", "--sync-config", cfg)

	out, err := edgecrdSync(t, dev, cfg, "--rule", "team")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "copied   ") != 2 || !strings.Contains(out, "2 copied") {
		t.Fatalf("first run: want 2 images copied:\n%s", out)
	}
	for repo, d := range want {
		h, err := remote.Head(dev.ref(t, repo+":1.4.1"), dev.remote()...)
		if err != nil || h.Digest != d {
			t.Fatalf("%s:1.4.1 on the device: %v %v, want digest %s", repo, h, err, d)
		}
		idx, err := remote.Index(dev.ref(t, repo+":1.4.1"), dev.remote()...)
		if err != nil {
			t.Fatal(err)
		}
		im, _ := idx.IndexManifest()
		for _, m := range im.Manifests {
			_, err := remote.Head(dev.ref(t, repo+"@"+m.Digest.String()), dev.remote()...)
			if (m.Platform.Architecture == "arm64") != (err == nil) {
				t.Errorf("%s %s on the device: %v (want only arm64)", repo, m.Platform, err)
			}
		}
		refs, err := ocitest.ReferrerDigests(dev.ref(t, repo+":x").Context(), d, dev.remote()...)
		if err != nil || len(refs) != 1 {
			t.Errorf("referrers of %s@%s on the device: %v %v, want 1", repo, d, refs, err)
		}
		for _, tag := range []string{"1.3.0", "2.0.0"} {
			if _, err := remote.Head(dev.ref(t, repo+":"+tag), dev.remote()...); err == nil {
				t.Errorf("%s:%s is outside >=1.4 <2 but was copied", repo, tag)
			}
		}
	}
	out, err = edgecrdSync(t, dev, cfg, "--rule", "team")
	if err != nil || !strings.Contains(out, "0 copied") || !strings.Contains(out, "2 skipped") || !strings.Contains(out, "Nothing to copy") {
		t.Fatalf("second run: %v, want nothing copied and saying so:\n%s", err, out)
	}

	// Acceptance 3: the uplink goes down in the middle of a 200 MiB sync
	// (8 layers of 25 MiB, paced at 25 MiB/s), once the device has stored
	// two of the layers.
	big := labelled(t, 25<<20, 8, "amd64")
	if err := remote.Write(up.ref(t, "big/app:1.0"), big, up.remote()...); err != nil {
		t.Fatal(err)
	}
	bd, _ := big.Digest()
	layers, _ := big.Layers()
	var layerDigests []v1.Hash
	full := map[string]bool{} // sizes of the image's blobs, as bytesOut
	for _, l := range layers {
		d, _ := l.Digest()
		n, _ := l.Size()
		layerDigests = append(layerDigests, d)
		full[strconv.FormatInt(n, 10)] = true
	}
	cfgName, _ := big.ConfigName()
	rawCfg, _ := big.RawConfigFile()
	full[strconv.Itoa(len(rawCfg))] = true
	stored := func() (n int) {
		for _, d := range append(layerDigests, cfgName) {
			if _, err := os.Stat(filepath.Join(dev.dataDir, "registry", "docker", "registry", "v2", "blobs", d.Algorithm, d.Hex[:2], d.Hex, "data")); err == nil {
				n++
			}
		}
		return n
	}
	fullSends := func(logs string) (n int) {
		for _, m := range bigBlobGet.FindAllStringSubmatch(logs, -1) {
			if full[m[1]] {
				n++
			}
		}
		return n
	}
	cmd := exec.Command(bin.edgecrd, "sync", "run", "--data-dir", dev.dataDir, "--sync-config", cfg, "--rule", "big", "--sync-rate", "25MiB/s")
	var buf lockedBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for stored() < 3 { // the config and two layers
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("after 2 min the device has %d of big/app's 9 blobs:\n%s", stored(), buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	up.link(t, "down")
	t.Cleanup(func() { ipCmd("link", "set", up.HostIf, "up") })
	before := stored()
	err = cmd.Wait()
	t.Logf("cut run, cut with %d of 9 blobs stored (%v):\n%s", before, err, indent(buf.String()))
	if err == nil || !strings.Contains(buf.String(), "failed   ") {
		t.Fatalf("the cut run did not report a failure")
	}
	if before == 9 {
		t.Fatal("every blob had arrived before the cut: the cut was not in the middle")
	}
	if _, err := remote.Head(dev.ref(t, "big/app:1.0"), dev.remote()...); err == nil {
		t.Fatal("big/app:1.0 is visible after the cut run")
	}
	up.link(t, "up")
	mark := len(up.Logs())
	out, err = edgecrdSync(t, dev, cfg, "--rule", "big")
	if err != nil || !strings.Contains(out, "1 copied") {
		t.Fatalf("resumed run: %v\n%s", err, out)
	}
	// The resumed run fetches only what had not arrived: the device says
	// how many it had, and the upstream sent no more whole blobs than the
	// rest.
	m := regexp.MustCompile(`(\d+) blob\(s\), .* sent, (\d+) already here`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("resumed run: no blob counts in:\n%s", out)
	}
	sent, present := atoi(t, m[1]), atoi(t, m[2])
	time.Sleep(500 * time.Millisecond) // the upstream's log lines
	sends := fullSends(up.Logs()[mark:])
	t.Logf("resumed run: %d blob(s) sent, %d already here (%d stored at the cut); the upstream sent %d whole blob(s) of big/app", sent, present, before, sends)
	if present < before || sent+present != 9 || sends > 9-before {
		t.Errorf("the resumed run fetched again what had arrived: %d sent, %d already here, %d stored before; upstream sent %d whole blobs, want at most %d", sent, present, before, sends, 9-before)
	}
	if h, err := remote.Head(dev.ref(t, "big/app:1.0"), dev.remote()...); err != nil || h.Digest != bd {
		t.Fatalf("big/app:1.0 after the resumed run: %v %v, want %s", h, err, bd)
	}
	dev.pullVerified(t, "big/app:1.0", bd)
}

// bigBlobGet is the upstream's log line of a blob GET of big/app, with
// the bytes it sent.
var bigBlobGet = regexp.MustCompile(`"msg":"request","method":"GET","route":"blob","repo":"big/app","user":"admin","status":200,"bytesOut":(\d+)`)

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var blobGetLine = regexp.MustCompile(`"msg":"request","method":"GET","route":"blob","repo":"([^"]+)","user":"admin","status":200`)

// Acceptance 2 of issue 15: docker pull through the device, 10 pullers
// sharing one upstream fetch per blob, and the uplink down.
func TestPullThroughDocker(t *testing.T) {
	up := newSyncUpstream(t)
	dk := newDockerCLI(t)
	for _, repo := range []string{"lib/app", "lib/shared"} {
		if err := remote.Write(up.ref(t, repo+":v1"), labelled(t, 1<<20, 3, "amd64"), up.remote()...); err != nil {
			t.Fatal(err)
		}
	}
	cfg := up.config(t, "pullThrough:\n  - {prefix: cache, upstream: up}\n")
	dev := startDevice(t, "", "--sync-config", cfg)
	if _, err := dk.Run(dev.info.Password+"\n", "login", dev.addr, "-u", "admin", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	ref := dev.addr + "/cache/lib/app:v1"
	defer dk.Run("", "rmi", "-f", ref) // before the test's context ends (Cleanup would be too late)
	dk.Must("pull", ref)
	if !strings.Contains(dev.stderr.String(), `"repo":"cache/lib/app","user":"admin"`) {
		t.Error("the device's request log does not show docker's pull")
	}
	if _, err := remote.Head(dev.ref(t, "cache/lib/app:v1"), dev.remote()...); err != nil {
		t.Fatalf("the pulled image is not stored on the device: %v", err)
	}

	// 10 pullers at once of an image the device does not have.
	before := len(blobGetLine.FindAllStringSubmatch(up.Logs(), -1))
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			img, err := remote.Image(dev.ref(t, "cache/lib/shared:v1"), dev.remote()...)
			if err == nil {
				var ls []v1.Layer
				if ls, err = img.Layers(); err == nil {
					for _, l := range ls {
						if rc, err2 := l.Compressed(); err2 != nil {
							err = err2
						} else {
							rc.Close()
						}
					}
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a concurrent pull through the device: %v", err)
		}
	}
	time.Sleep(500 * time.Millisecond) // the upstream's log lines
	gets := 0
	for _, m := range blobGetLine.FindAllStringSubmatch(up.Logs(), -1)[before:] {
		if m[1] == "lib/shared" {
			gets++
		}
	}
	t.Logf("10 concurrent pullers: %d blob GETs on the upstream for an image of 4 blobs (3 layers, config)", gets)
	if gets != 4 {
		t.Errorf("upstream blob GETs for lib/shared: %d, want 4 (one per blob)", gets)
	}

	// The uplink down: what is stored pulls, what is not names the upstream.
	up.link(t, "down")
	t.Cleanup(func() { ipCmd("link", "set", up.HostIf, "up") })
	dk.Must("rmi", ref)
	dk.Must("pull", ref)
	for i := range 2 { // the second finds the upstream known to be down and fails at once
		start := time.Now()
		out, err := dk.Run("", "pull", dev.addr+"/cache/lib/missing:v1")
		t.Logf("docker pull %d of a missing image with the uplink down (%v): %v\n%s", i+1, time.Since(start).Round(time.Millisecond), err, indent(out))
		if err == nil || !strings.Contains(out, "upstream up ("+up.addr+")") {
			t.Errorf("want the pull to fail naming upstream up (%s)", up.addr)
		}
	}
}

// Acceptance 5 of issue 15 against the namespaced upstream: an invalid
// sync configuration, wrong upstream credentials and an upstream whose
// certificate the device does not trust each end `edgecrd sync run` with
// a clear error; nothing is stored and the device keeps serving.
func TestSyncBadInputNamespaced(t *testing.T) {
	up := newSyncUpstream(t)
	if err := remote.Write(up.ref(t, "team/app:1.4.0"), labelled(t, 4096, 1, "amd64"), up.remote()...); err != nil {
		t.Fatal(err)
	}
	dev := startDevice(t, "")
	rule := "rules:\n  - name: r\n    upstream: up\n    repositories: [team/app]\n"
	wrongCred := filepath.Join(t.TempDir(), "cred")
	if err := os.WriteFile(wrongCred, []byte("admin:not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noCA := func(t *testing.T) string { // the system roots only
		p := filepath.Join(t.TempDir(), "sync.yaml")
		y := fmt.Sprintf("upstreams:\n  - name: up\n    url: https://%s\n    credentials: {file: %s}\n", up.addr, up.cred) + rule
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		cfg  func(t *testing.T) string
		want []string
	}{
		{"unknown key", func(t *testing.T) string { return up.config(t, rule+"    referrer: true\n") }, []string{"line 10", `unknown key "referrer"`}},
		{"bad regex", func(t *testing.T) string { return up.config(t, rule+"    tags: {regex: \"^(1\"}\n") }, []string{"line 10", "bad tags.regex"}},
		{"bad semver range", func(t *testing.T) string { return up.config(t, rule+"    tags: {semver: \">=banana\"}\n") }, []string{"line 10", "bad tags.semver range"}},
		{"unknown schedule", func(t *testing.T) string { return up.config(t, rule+"    schedule: hourly\n") }, []string{"line 10", `unknown schedule "hourly"`}},
		{"wrong credentials", func(t *testing.T) string {
			c := up.config(t, rule)
			b, _ := os.ReadFile(c)
			os.WriteFile(c, []byte(strings.Replace(string(b), up.cred, wrongCred, 1)), 0o600)
			return c
		}, []string{"upstream up (" + up.addr + ")", "UNAUTHORIZED"}},
		{"untrusted certificate", noCA, []string{"upstream up (" + up.addr + ")", "its certificate is not trusted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := edgecrd(t, "sync", "run", "--data-dir", dev.dataDir, "--sync-config", tc.cfg(t))
			t.Logf("edgecrd sync run: %v\n%s%s", err, indent(out), indent(errOut))
			errOut += out
			if err == nil {
				t.Fatal("edgecrd sync run succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("the error does not say %q", w)
				}
			}
			if _, err := remote.Head(dev.ref(t, "team/app:1.4.0"), dev.remote()...); err == nil {
				t.Error("team/app:1.4.0 was stored")
			}
			if _, err := remote.Catalog(t.Context(), dev.ref(t, "x").Context().Registry, dev.remote()...); err != nil {
				t.Errorf("the device after the failed run: %v", err)
			}
		})
	}
}
