//go:build linux

package e2e

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgecr/edgecr/e2e/testenv"
)

const daemonJSON = "/etc/docker/daemon.json"

// TestMirrorJoinRealMachine is acceptance point 4 of the sync issue: as
// root on this machine, `edgecr join --mirror docker.io` makes the real
// Docker daemon (a name without a registry: docker.io) and containerd
// (ctr with the hosts directory join wrote) pull docker.io's
// library/<name> from the device, as the device's request log shows,
// without restarting dockerd; `edgecr leave` puts daemon.json and the
// containerd hosts directory back byte for byte and reloads dockerd
// again. Nothing leaves the machine: the image is on the device before
// any pull, the device serves only what it stores (its sync configuration
// has no upstream), and it runs in a network namespace the test creates.
func TestMirrorJoinRealMachine(t *testing.T) {
	testenv.NeedRoot(t, "edgecr join --mirror writes /etc/docker/daemon.json and /etc/containerd/certs.d, and reloads dockerd")
	testenv.NeedCommand(t, "ip", "makes the network namespace the device runs in")
	ctr := testenv.NeedCommand(t, "ctr", "pulls through containerd's hosts directory")
	uca := testenv.NeedCommand(t, "update-ca-certificates", "the system trust store is Debian's")
	const ctrSock = "/run/docker/containerd/containerd.sock"
	_, err := os.Stat(ctrSock)
	testenv.Need(t, err == nil, "no containerd socket at "+ctrSock+" (Docker's containerd)")
	_, err = os.Stat("/etc/containerd")
	testenv.Need(t, err == nil, "no /etc/containerd: join detects containerd by it")
	tmp := newDockerCLI(t)
	daemon := localDockerd(t)

	original := snapshotSystem(t)
	if out, err := exec.Command(uca, "--fresh").CombinedOutput(); err != nil {
		t.Fatalf("normalising the trust store: %v\n%s", err, out)
	}
	base := snapshotSystem(t)
	if d := original.Diff(); len(d) > 0 {
		t.Logf("update-ca-certificates --fresh changed on this machine (restored at the end):\n%s", indent(strings.Join(d, "\n")))
	}
	javaBefore := javaTrust(t)
	runtimeDirs := []string{daemonJSON, "/etc/containerd", "/etc/containers", "/etc/rancher"}
	runtimesBefore := treeListing(t, runtimeDirs...)
	// daemon.json and the containerd hosts directory are not in the
	// system snapshot: put them back on failure too, and reload dockerd.
	restoreRuntimes := saveFiles(t, daemonJSON, "/etc/containerd/certs.d", "/etc/containers")

	name := "edgecr-mirror-" + randomHex(4)
	img := buildScratchImage(t, "edgecr-e2e/"+name+":1")
	syncCfg := filepath.Join(t.TempDir(), "sync.yaml")
	if err := os.WriteFile(syncCfg, []byte("mirror:\n  listen: \":31002\"\n  registries:\n    - name: docker.io\n      repositories: [\"library/*\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := netnsDevice(t, "", "--sync-config", syncCfg)
	tokOut, e, err := edgecrd(t, "token", "create", "--data-dir", dev.dataDir, "-o", "json")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, e)
	}
	var tok struct{ Token string }
	if err := jsonUnmarshal(tokOut, &tok); err != nil {
		t.Fatal(err)
	}
	credDir := t.TempDir()
	env := []string{
		"EDGECR_CONFIG_DIR=" + credDir,
		"PATH=" + filepath.Dir(bin.helper) + string(os.PathListSeparator) + os.Getenv("PATH"),
	}
	dk := &dockerCLI{t: t, ctx: tmp.ctx, Config: dockerConfigDir(), extra: env}
	edgecr := func(args ...string) (string, error) {
		cmd := exec.Command(bin.edgecr, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	leaveOnFailure := onUndo(t, "edgecr leave", func(logf func(string, ...any)) error {
		out, err := edgecr("leave")
		logf("edgecr leave (cleanup): %v\n%s", err, out)
		return nil
	})

	out, err := edgecr("join", "https://"+dev.IP+":31001", "--token", tok.Token, "--name", "e2e-mirror", "--mirror", "docker.io")
	if err != nil {
		t.Fatalf("edgecr join --mirror docker.io: %v\n%s", err, indent(out))
	}
	t.Logf("edgecr join --mirror docker.io:\n%s", indent(out))
	if !strings.Contains(out, "reloaded dockerd") {
		t.Errorf("join does not report reloading dockerd")
	}
	host, _, _ := strings.Cut(dev.info.Endpoint, ":")
	mirrorURL := "https://" + host + ":31002"
	waitDockerMirrors(t, dk, mirrorURL, true)
	st, err := edgecr("status")
	t.Logf("edgecr status:\n%s", indent(st))
	if err != nil || !strings.Contains(st, "mirror of docker.io (docker-daemon)") || !strings.Contains(st, "mirror of docker.io (containerd-hosts)") {
		t.Errorf("status does not show the mirror entries in force: %v", err)
	}

	// The image goes onto the device under docker.io's name, before any pull.
	onDevice := dev.info.Endpoint + "/library/" + name + ":latest"
	dk.Must("tag", img.Ref, onDevice)
	dk.Must("push", onDevice)
	dk.Must("rmi", onDevice)
	dk.Must("rmi", img.Ref)

	out = dk.Must("pull", name) // docker.io/library/<name>:latest
	if !strings.Contains(out, "Downloaded newer image for "+name+":latest") {
		t.Fatalf("docker pull %s:\n%s", name, indent(out))
	}
	requireMirrorPull(t, dev, name, "docker")
	dk.Run("", "rmi", name)

	ctrArgs := []string{"--address", ctrSock, "--namespace", "edgecr-e2e-" + randomHex(3)}
	ns := ctrArgs[3]
	t.Cleanup(func() {
		exec.Command(ctr, append(ctrArgs, "image", "rm", "docker.io/library/"+name+":latest")...).Run()
		exec.Command(ctr, append(ctrArgs, "content", "prune", "references")...).Run()
		exec.Command(ctr, "--address", ctrSock, "namespaces", "rm", ns).Run()
	})
	before := len(mirrorLines(dev, name))
	cout, err := exec.Command(ctr, append(ctrArgs, "image", "pull", "--hosts-dir", "/etc/containerd/certs.d", "docker.io/library/"+name+":latest")...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr image pull --hosts-dir /etc/containerd/certs.d docker.io/library/%s: %v\n%s", name, err, cout)
	}
	got := mirrorLines(dev, name)[before:]
	if !slices.ContainsFunc(got, func(l string) bool {
		return strings.Contains(l, `"route":"manifest"`) && strings.Contains(l, `"status":200`)
	}) {
		t.Fatalf("ctr pull: the device's request log shows no mirror manifest request for library/%s:\n%s", name, strings.Join(got, "\n"))
	}
	t.Logf("containerd pulled through the mirror: %d requests in the device's log, e.g. %s", len(got), got[0])

	if now := localDockerd(t); now != daemon {
		t.Fatalf("the Docker daemon restarted: was %v, now %v", daemon, now)
	}

	out, err = edgecr("leave")
	if err != nil {
		t.Fatalf("edgecr leave: %v\n%s", err, indent(out))
	}
	leaveOnFailure.run(t.Logf)
	t.Logf("edgecr leave:\n%s", indent(out))
	if !strings.Contains(out, "reloaded dockerd") {
		t.Errorf("leave does not report reloading dockerd")
	}
	waitDockerMirrors(t, dk, mirrorURL, false)
	if d := diffTrees(runtimesBefore, treeListing(t, runtimeDirs...)); len(d) > 0 {
		t.Errorf("join --mirror + leave left daemon.json or runtime config different:\n%s", indent(strings.Join(d, "\n")))
	} else {
		restoreRuntimes.run(t.Logf) // nothing to restore
	}
	// The Java keystore ca-certificates-java rebuilds carries fresh
	// creation dates: its entries must be the same, not its bytes.
	javaAfter := javaTrust(t)
	if d := diffTrees(javaBefore, javaAfter); len(d) > 0 {
		t.Errorf("the Java keystore's entries differ after leave:\n%s", indent(strings.Join(d, "\n")))
	}
	var bad []string
	for _, d := range base.Diff() {
		if strings.HasPrefix(d, javaKeystore+": ") && strings.Contains(d, "content changed") && javaBefore != nil {
			continue
		}
		bad = append(bad, d)
	}
	if len(bad) > 0 {
		t.Errorf("join + leave left the system different:\n%s", indent(strings.Join(bad, "\n")))
	}
	if now := localDockerd(t); now != daemon {
		t.Fatalf("the Docker daemon restarted: was %v, now %v", daemon, now)
	}
}

// mirrorLines are the device's request log lines of the mirror listener
// for library/name.
func mirrorLines(dev *nsDevice, name string) []string {
	var out []string
	for l := range strings.Lines(dev.Logs()) {
		if strings.Contains(l, `"user":"mirror"`) && strings.Contains(l, `"repo":"library/`+name+`"`) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

var manifest200 = regexp.MustCompile(`"method":"GET","route":"manifest","repo":"library/[^"]+","user":"mirror","status":200`)

func requireMirrorPull(t *testing.T, dev *nsDevice, name, who string) {
	t.Helper()
	lines := mirrorLines(dev, name)
	for _, l := range lines {
		if manifest200.MatchString(l) {
			t.Logf("%s pulled through the mirror; the device logged: %s", who, l)
			return
		}
	}
	t.Fatalf("%s pull: the device's request log shows no mirror manifest GET for library/%s:\n%s\nlog:\n%s", who, name, strings.Join(lines, "\n"), lastLines(dev.Logs(), 30))
}

// waitDockerMirrors waits for dockerd's reload (SIGHUP is asynchronous)
// to show, or no longer show, url among its registry mirrors.
func waitDockerMirrors(t *testing.T, dk *dockerCLI, url string, want bool) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got = dk.Must("info", "--format", "{{json .RegistryConfig.Mirrors}}")
		if strings.Contains(got, url) == want {
			t.Logf("docker info: registry mirrors %s", strings.TrimSpace(got))
			return
		}
	}
	t.Fatalf("docker info shows registry mirrors %s; want %s listed: %v", got, url, want)
}

// saveFiles records the files and trees at paths (bytes and modes) and
// registers their restore: on failure (or an interrupted run) everything
// goes back, and dockerd is reloaded when daemon.json was among them.
func saveFiles(t *testing.T, paths ...string) *undoer {
	t.Helper()
	type entry struct {
		data []byte
		mode fs.FileMode
		dir  bool
	}
	saved := map[string]*entry{}
	for _, top := range paths {
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			e := &entry{mode: fi.Mode(), dir: d.IsDir()}
			if d.Type().IsRegular() {
				if e.data, err = os.ReadFile(p); err != nil {
					t.Fatalf("saving %s: %v", p, err)
				}
			}
			saved[p] = e
			return nil
		})
	}
	same := func() bool {
		n := 0
		for _, top := range paths {
			filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return nil
				}
				n++
				e := saved[p]
				info, fi := d.Info()
				if e == nil || fi != nil || info.Mode() != e.mode {
					n = -1 << 30
					return nil
				}
				if d.Type().IsRegular() {
					if b, err := os.ReadFile(p); err != nil || string(b) != string(e.data) {
						n = -1 << 30
					}
				}
				return nil
			})
		}
		return n == len(saved)
	}
	return onUndo(t, "runtime files "+strings.Join(paths, ", "), func(logf func(string, ...any)) error {
		if same() {
			return nil // as they were: no rewrite, no reload
		}
		var errs []error
		for _, top := range paths {
			filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
				if err == nil && saved[p] == nil {
					errs = append(errs, os.RemoveAll(p))
					if d != nil && d.IsDir() {
						return filepath.SkipDir
					}
				}
				return nil
			})
		}
		for p, e := range saved {
			if e.dir {
				errs = append(errs, os.MkdirAll(p, e.mode.Perm()))
				continue
			}
			if e.mode.IsRegular() {
				errs = append(errs, os.WriteFile(p, e.data, e.mode.Perm()), os.Chmod(p, e.mode.Perm()))
			}
		}
		if b, err := os.ReadFile("/run/docker.pid"); err == nil {
			var pid int
			for _, c := range strings.TrimSpace(string(b)) {
				pid = pid*10 + int(c-'0')
			}
			if pid > 1 {
				errs = append(errs, syscall.Kill(pid, syscall.SIGHUP))
			}
		}
		logf("restored %s", strings.Join(paths, ", "))
		return errors.Join(errs...)
	})
}
