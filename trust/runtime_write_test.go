package trust_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
	"github.com/google/go-cmp/cmp"
)

const foreignRegistries = `# node registries, managed by hand
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
configs:
  "mirror.example.com:5000":
    auth:
      username: robot
      password: s3cret
`

// runtimeRoot is a machine with Docker and containerd configured, podman
// installed but never run (no /etc/containers yet), and k3s with a
// hand-written registries.yaml.
func runtimeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/docker/daemon.json"), "{\"log-driver\": \"journald\"}\n")
	writeFile(t, filepath.Join(root, "etc/containerd/config.toml"), "version = 2\n")
	writeFile(t, filepath.Join(root, "usr/bin/podman"), "#!/bin/sh\n")
	writeFile(t, filepath.Join(root, "etc/rancher/k3s/registries.yaml"), foreignRegistries)
	if err := os.Chmod(filepath.Join(root, "etc/rancher/k3s/registries.yaml"), 0o640); err != nil {
		t.Fatal(err)
	}
	return root
}

func planFor(t *testing.T, root string, ca []byte) trust.RuntimePlan {
	t.Helper()
	paths, err := trust.DefaultRuntimePaths("linux", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	found := trust.DetectRuntimes(root, paths, func(p string) bool { _, err := os.Stat(p); return err == nil })
	plan, err := trust.PlanRuntimes(paths, testReg, ca, found)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// mode returns p's permission bits; on Windows, which has no such bits, it
// returns what the caller expects, so that the checks run where they mean
// something.
func mode(t *testing.T, p string, want os.FileMode) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "windows" {
		return want
	}
	return fi.Mode().Perm()
}

func TestRuntimeWriterRoundTrip(t *testing.T) {
	ctx := context.Background()
	root := runtimeRoot(t)
	ca := trusttest.NewCA(t, "device CA")
	plan := planFor(t, root, ca)
	if want := trust.AllRuntimes(); !slices.Equal(plan.Runtimes, want) {
		t.Fatalf("detected %v, want %v", plan.Runtimes, want)
	}
	w := &trust.RuntimeWriter{Root: root}
	before := trusttest.Snapshot(t, root)

	if missing, err := w.Verify(ctx, plan); err != nil || len(missing) != 6 {
		t.Errorf("Verify before Install = %v, %v; want 5 files and the k3s entry", missing, err)
	}
	rc, changed, err := w.Install(ctx, plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 6 {
		t.Errorf("changed = %v, want 6 paths", changed)
	}
	p := func(s string) string { return filepath.Join(root, s) }
	for _, f := range []string{
		"etc/docker/certs.d/" + testReg + "/ca.crt",
		"etc/containerd/certs.d/" + testReg + "/ca.crt",
		"etc/containers/certs.d/" + testReg + "/ca.crt",
		"etc/rancher/k3s/edgecr/" + testReg + "/ca.crt",
	} {
		if got := readFile(t, p(f)); got != string(ca) {
			t.Errorf("%s does not hold the CA", f)
		}
		if m := mode(t, p(f), 0o644); m != 0o644 {
			t.Errorf("%s mode %v, want 0644", f, m)
		}
		if m := mode(t, filepath.Dir(p(f)), 0o755); m != 0o755 {
			t.Errorf("%s mode %v, want 0755", filepath.Dir(f), m)
		}
	}
	hosts := readFile(t, p("etc/containerd/certs.d/"+testReg+"/hosts.toml"))
	if !strings.Contains(hosts, `ca = "/etc/containerd/certs.d/`+testReg+`/ca.crt"`) || strings.Contains(hosts, root) {
		t.Errorf("hosts.toml must name the CA as the machine sees it:\n%s", hosts)
	}
	regs := readFile(t, p("etc/rancher/k3s/registries.yaml"))
	if !strings.HasPrefix(regs, "# node registries, managed by hand\nmirrors:") ||
		!strings.Contains(regs, `ca_file: "/etc/rancher/k3s/edgecr/`+testReg+`/ca.crt"`) ||
		!strings.Contains(regs, "password: s3cret") || strings.Contains(regs, root) {
		t.Errorf("registries.yaml:\n%s", regs)
	}
	if m := mode(t, p("etc/rancher/k3s/registries.yaml"), 0o640); m != 0o640 {
		t.Errorf("registries.yaml mode %v, want its original 0640", m)
	}
	wantDirs := []string{
		"/etc/docker/certs.d", "/etc/docker/certs.d/" + testReg,
		"/etc/containerd/certs.d", "/etc/containerd/certs.d/" + testReg,
		"/etc/containers", "/etc/containers/certs.d", "/etc/containers/certs.d/" + testReg,
		"/etc/rancher/k3s/edgecr", "/etc/rancher/k3s/edgecr/" + testReg,
	}
	if diff := cmp.Diff(wantDirs, rc.Dirs); diff != "" {
		t.Errorf("receipt dirs (-want +got):\n%s", diff)
	}
	if rc.K3s == nil || rc.K3s.CreatedFile {
		t.Errorf("receipt k3s = %+v, want an entry in an existing file", rc.K3s)
	}
	if missing, err := w.Verify(ctx, plan); err != nil || len(missing) != 0 {
		t.Errorf("Verify after Install = %v, %v", missing, err)
	}

	// The receipt survives being stored as JSON.
	b, err := json.Marshal(rc)
	if err != nil {
		t.Fatal(err)
	}
	var stored trust.RuntimeReceipt
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}

	// Idempotent: nothing written the second time, same receipt.
	afterInstall := trusttest.Snapshot(t, root)
	rc2, changed, err := w.Install(ctx, plan, &stored)
	if err != nil || len(changed) != 0 {
		t.Fatalf("second Install changed %v, %v", changed, err)
	}
	if diff := cmp.Diff(rc, rc2); diff != "" {
		t.Errorf("second receipt differs (-first +second):\n%s", diff)
	}
	if diff := trusttest.DiffSnapshots(afterInstall, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("second Install touched files:\n%s", diff)
	}

	kept, err := w.Uninstall(ctx, rc2)
	if err != nil || len(kept) != 0 {
		t.Fatalf("Uninstall kept %v, %v", kept, err)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("root not restored:\n%s", diff)
	}
	if kept, err := w.Uninstall(ctx, rc2); err != nil || len(kept) != 0 {
		t.Errorf("second Uninstall = %v, %v", kept, err)
	}
}

// With only the k3s binary, edgecr creates registries.yaml and its
// directories, and removes all of it again.
func TestRuntimeWriterCreatesRegistriesYAML(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "usr/local/bin/k3s"), "")
	plan := planFor(t, root, trusttest.NewCA(t, "device CA"))
	if !slices.Equal(plan.Runtimes, []trust.Runtime{trust.K3s}) {
		t.Fatalf("detected %v", plan.Runtimes)
	}
	before := trusttest.Snapshot(t, root)
	w := &trust.RuntimeWriter{Root: root}
	rc, _, err := w.Install(ctx, plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rc.K3s == nil || !rc.K3s.CreatedFile {
		t.Fatalf("receipt k3s = %+v, want CreatedFile", rc.K3s)
	}
	if m := mode(t, filepath.Join(root, "etc/rancher/k3s/registries.yaml"), 0o600); m != 0o600 {
		t.Errorf("new registries.yaml mode %v, want 0600", m)
	}
	if _, err := w.Uninstall(ctx, rc); err != nil {
		t.Fatal(err)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("root not restored:\n%s", diff)
	}
}

// Entries the user added to a registries.yaml edgecr created stay, and so
// does the file.
func TestRuntimeWriterKeepsUserEditsToCreatedRegistriesYAML(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	mkdir(t, filepath.Join(root, "etc/rancher/k3s"))
	w := &trust.RuntimeWriter{Root: root}
	rc, _, err := w.Install(ctx, planFor(t, root, trusttest.NewCA(t, "device CA")), nil)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "etc/rancher/k3s/registries.yaml")
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("mirrors:\n  docker.io:\n    endpoint: [\"https://m.example.com\"]\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := w.Uninstall(ctx, rc); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, file), "mirrors:\n  docker.io:\n    endpoint: [\"https://m.example.com\"]\n"; got != want {
		t.Errorf("registries.yaml after Uninstall:\n%s\nwant:\n%s", got, want)
	}
}

func TestRuntimeWriterMalformedRegistriesYAML(t *testing.T) {
	root := runtimeRoot(t)
	bad := "configs:\n  \"a:1\":\n\tauth: x\n"
	writeFile(t, filepath.Join(root, "etc/rancher/k3s/registries.yaml"), bad)
	before := trusttest.Snapshot(t, root)
	w := &trust.RuntimeWriter{Root: root}
	_, changed, err := w.Install(context.Background(), planFor(t, root, trusttest.NewCA(t, "device CA")), nil)
	if !errors.Is(err, trust.ErrMalformedConfig) {
		t.Fatalf("Install error = %v, want ErrMalformedConfig", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(root, "etc/rancher/k3s/registries.yaml")) {
		t.Errorf("error %q does not name the file", err)
	}
	if len(changed) != 0 {
		t.Errorf("changed %v", changed)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("failed Install changed the root (nothing may be written):\n%s", diff)
	}
}

// registries.yaml broken between join and leave: leave still removes the
// other runtimes' files, leaves registries.yaml and the CA it names alone,
// and reports the error.
func TestRuntimeWriterUninstallWithBrokenRegistriesYAML(t *testing.T) {
	ctx := context.Background()
	root := runtimeRoot(t)
	w := &trust.RuntimeWriter{Root: root}
	rc, _, err := w.Install(ctx, planFor(t, root, trusttest.NewCA(t, "device CA")), nil)
	if err != nil {
		t.Fatal(err)
	}
	regs := filepath.Join(root, "etc/rancher/k3s/registries.yaml")
	broken := readFile(t, regs) + "\t- oops\n"
	writeFile(t, regs, broken)
	kept, err := w.Uninstall(ctx, rc)
	if !errors.Is(err, trust.ErrMalformedConfig) {
		t.Fatalf("Uninstall error = %v, want ErrMalformedConfig", err)
	}
	if readFile(t, regs) != broken {
		t.Errorf("registries.yaml was touched")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/rancher/k3s/edgecr", testReg, "ca.crt")); err != nil {
		t.Errorf("CA named by registries.yaml was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/docker/certs.d", testReg)); !os.IsNotExist(err) {
		t.Errorf("docker files not removed: %v", err)
	}
	if len(kept) == 0 {
		t.Errorf("kept is empty; want registries.yaml and the k3s CA reported")
	}
}

func TestRuntimeWriterForeignFile(t *testing.T) {
	root := runtimeRoot(t)
	writeFile(t, filepath.Join(root, "etc/docker/certs.d", testReg, "ca.crt"), string(trusttest.NewCA(t, "someone else")))
	before := trusttest.Snapshot(t, root)
	w := &trust.RuntimeWriter{Root: root}
	_, _, err := w.Install(context.Background(), planFor(t, root, trusttest.NewCA(t, "device CA")), nil)
	if !errors.Is(err, trust.ErrForeignFile) {
		t.Fatalf("Install error = %v, want ErrForeignFile", err)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("failed Install changed the root:\n%s", diff)
	}
}

// A file already holding exactly the planned content is not edgecr's: it
// stays on Uninstall.
func TestRuntimeWriterLeavesIdenticalPreexistingFile(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	ca := trusttest.NewCA(t, "device CA")
	writeFile(t, filepath.Join(root, "etc/docker/certs.d", testReg, "ca.crt"), string(ca))
	before := trusttest.Snapshot(t, root)
	w := &trust.RuntimeWriter{Root: root}
	rc, changed, err := w.Install(ctx, planFor(t, root, ca), nil)
	if err != nil || len(changed) != 0 || len(rc.Files) != 0 {
		t.Fatalf("Install = %+v, %v, %v", rc, changed, err)
	}
	if _, err := w.Uninstall(ctx, rc); err != nil {
		t.Fatal(err)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("Uninstall removed what was there before:\n%s", diff)
	}
}

func TestRuntimeWriterKeepsModifiedFile(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	mkdir(t, filepath.Join(root, "etc/docker"))
	w := &trust.RuntimeWriter{Root: root}
	rc, _, err := w.Install(ctx, planFor(t, root, trusttest.NewCA(t, "device CA")), nil)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "etc/docker/certs.d", testReg, "ca.crt")
	writeFile(t, file, "edited by the user\n")
	kept, err := w.Uninstall(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, file) != "edited by the user\n" {
		t.Errorf("modified file was removed or changed")
	}
	if len(kept) != 3 || !strings.HasPrefix(kept[0], file) {
		t.Errorf("kept = %v, want the file and its two directories", kept)
	}
}

// A renewed CA replaces edgecr's own file when the prior receipt proves
// ownership, and is refused without it.
func TestRuntimeWriterRenewedCA(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	mkdir(t, filepath.Join(root, "etc/containers"))
	w := &trust.RuntimeWriter{Root: root}
	before := trusttest.Snapshot(t, root)
	rc, _, err := w.Install(ctx, planFor(t, root, trusttest.NewCA(t, "old")), nil)
	if err != nil {
		t.Fatal(err)
	}
	renewed := planFor(t, root, trusttest.NewCA(t, "new"))
	if _, _, err := w.Install(ctx, renewed, nil); !errors.Is(err, trust.ErrForeignFile) {
		t.Fatalf("Install without receipt: %v, want ErrForeignFile", err)
	}
	rc2, changed, err := w.Install(ctx, renewed, &rc)
	if err != nil || len(changed) != 1 {
		t.Fatalf("Install with receipt = %v, %v", changed, err)
	}
	if _, err := w.Uninstall(ctx, rc2); err != nil {
		t.Fatal(err)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("root not restored:\n%s", diff)
	}
}

func TestRuntimeWriterRefusesSymlinkedRegistriesYAML(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "srv/registries.yaml"), "mirrors: {}\n")
	mkdir(t, filepath.Join(root, "etc/rancher/k3s"))
	if err := os.Symlink(filepath.Join(root, "srv/registries.yaml"), filepath.Join(root, "etc/rancher/k3s/registries.yaml")); err != nil {
		t.Skipf("cannot create a symbolic link here: %v", err)
	}
	before := trusttest.Snapshot(t, root)
	w := &trust.RuntimeWriter{Root: root}
	if _, _, err := w.Install(context.Background(), planFor(t, root, trusttest.NewCA(t, "device CA")), nil); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Install error = %v, want a refusal to replace the link", err)
	}
	if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
		t.Errorf("root changed:\n%s", diff)
	}
}

func TestRuntimeWriterRejectsReceiptOfOtherRegistry(t *testing.T) {
	root := t.TempDir()
	w := &trust.RuntimeWriter{Root: root}
	plan := planFor(t, root, trusttest.NewCA(t, "device CA"))
	if _, _, err := w.Install(context.Background(), plan, &trust.RuntimeReceipt{Registry: "other:1"}); err == nil {
		t.Fatal("Install accepted a receipt for another registry")
	}
}

// InstallWithIntent hands out the receipt of what it is about to write
// before the first write: whether the process dies before the writes or
// right after them, that receipt lets a later Install claim the files and
// Uninstall give the machine back byte for byte. A renewal's intent covers
// the old content too.
func TestRuntimeWriterIntent(t *testing.T) {
	ctx := context.Background()
	errCrash := errors.New("crash")
	for _, written := range []bool{false, true} {
		name := "crash before the writes"
		if written {
			name = "crash after the writes"
		}
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			mkdir(t, filepath.Join(root, "etc/docker"))
			mkdir(t, filepath.Join(root, "etc/containerd"))
			mkdir(t, filepath.Join(root, "etc/rancher/k3s")) // no registries.yaml yet
			w := &trust.RuntimeWriter{Root: root}
			before := trusttest.Snapshot(t, root)
			plan := planFor(t, root, trusttest.NewCA(t, "device CA"))
			var intent trust.RuntimeReceipt
			persisted := 0
			_, _, err := w.InstallWithIntent(ctx, plan, nil, func(rc trust.RuntimeReceipt) error {
				intent = rc
				persisted++
				if !written {
					return errCrash
				}
				return nil
			})
			if persisted != 1 || (!written && !errors.Is(err, errCrash)) || (written && err != nil) {
				t.Fatalf("InstallWithIntent = %v, persisted %d times", err, persisted)
			}
			if len(intent.Files) != 4 || intent.K3s == nil || !intent.K3s.CreatedFile || len(intent.Dirs) == 0 {
				t.Fatalf("intent = %+v", intent)
			}
			for _, f := range intent.Files {
				if !f.Pending {
					t.Errorf("%s not pending in the intent", f.Path)
				}
			}
			if !written {
				if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
					t.Fatalf("a refused intent wrote:\n%s", diff)
				}
			}
			// What the caller recorded is all that is known: the rerun
			// claims the files (nothing foreign), the leave removes them.
			rc, _, err := w.Install(ctx, plan, &intent)
			if err != nil {
				t.Fatalf("rerun with the intent: %v", err)
			}
			for _, f := range rc.Files {
				if f.Pending {
					t.Errorf("%s still pending after the rerun", f.Path)
				}
			}
			if kept, err := w.Uninstall(ctx, rc); err != nil || len(kept) != 0 {
				t.Fatalf("Uninstall = %v, %v", kept, err)
			}
			if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
				t.Errorf("root not restored:\n%s", diff)
			}

			// Leave straight after the crash, with only the intent.
			if _, _, err := w.InstallWithIntent(ctx, plan, nil, func(rc trust.RuntimeReceipt) error {
				intent = rc
				if !written {
					return errCrash
				}
				return nil
			}); written && err != nil {
				t.Fatal(err)
			}
			if kept, err := w.Uninstall(ctx, intent); err != nil || len(kept) != 0 {
				t.Fatalf("Uninstall of the intent = %v, %v", kept, err)
			}
			if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
				t.Errorf("root not restored from the intent:\n%s", diff)
			}
		})
	}

	t.Run("renewal", func(t *testing.T) {
		root := t.TempDir()
		mkdir(t, filepath.Join(root, "etc/containers"))
		w := &trust.RuntimeWriter{Root: root}
		before := trusttest.Snapshot(t, root)
		rc, _, err := w.Install(ctx, planFor(t, root, trusttest.NewCA(t, "old")), nil)
		if err != nil {
			t.Fatal(err)
		}
		var intent trust.RuntimeReceipt
		renewed := planFor(t, root, trusttest.NewCA(t, "new"))
		if _, _, err := w.InstallWithIntent(ctx, renewed, &rc, func(i trust.RuntimeReceipt) error { intent = i; return errCrash }); !errors.Is(err, errCrash) {
			t.Fatal(err)
		}
		// The old file is still there: the intent knows it as edgecr's.
		if kept, err := w.Uninstall(ctx, intent); err != nil || len(kept) != 0 {
			t.Fatalf("Uninstall = %v, %v", kept, err)
		}
		if diff := trusttest.DiffSnapshots(before, trusttest.Snapshot(t, root)); diff != "" {
			t.Errorf("root not restored:\n%s", diff)
		}
	})
}
