package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/goreleaser/nfpm/v2"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./installers/pkg -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date (go test ./installers/pkg -update):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// installers/edgecrd.service is what unit renders for the package.
func TestUnitGolden(t *testing.T) {
	u, err := unit(defaultUnit)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "../edgecrd.service", u)
	for _, want := range []string{
		"\nUser=edgecrd\n", "\nStateDirectory=edgecrd\n",
		"\nExecStart=/usr/bin/edgecrd serve --data-dir /var/lib/edgecrd --dist-dir /usr/share/edgecrd/dist\n",
		"\nNoNewPrivileges=yes\n", "\nProtectSystem=strict\n", "\nCapabilityBoundingSet=\n",
	} {
		if !bytes.Contains(u, []byte(want)) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	if _, err := unit(unitOptions{Binary: "/usr/bin/edgecrd", DataDir: "/srv/edgecrd", User: "edgecrd"}); err == nil {
		t.Error("a data dir outside /var/lib/ was accepted: StateDirectory could not hold it")
	}
}

// systemd-analyze verify accepts the unit (with ExecStart pointing at an
// executable that exists here), where systemd-analyze is available: the
// issue asks for no more, and CI images need not carry systemd.
func TestUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	dir := t.TempDir()
	o := defaultUnit
	o.Binary = filepath.Join(dir, "edgecrd")
	if err := os.WriteFile(o.Binary, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := unit(o)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "edgecrd.service")
	if err := os.WriteFile(path, u, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	// Outside a booted systemd (containers, CI) verify still parses and
	// checks the unit; it only cannot load the system's other units.
	var bad []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "edgecrd.service") {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 {
		t.Errorf("systemd-analyze verify (%v):\n%s", err, strings.Join(bad, "\n"))
	}
	t.Logf("systemd-analyze verify: %v\n%s", err, out)
}

func fakeBinDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	names := []string{"edgecrd-linux-amd64"}
	for _, p := range agentPlatforms {
		exe := ""
		if strings.HasPrefix(p, "windows") {
			exe = ".exe"
		}
		names = append(names, "edgecr-"+p+exe, "docker-credential-edgecr-"+p+exe)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// describe lists what a package holds and runs, one line each: the
// generated artefact the golden files pin.
func describe(t *testing.T, i *nfpm.Info, format string) []byte {
	t.Helper()
	ic := *i
	if err := nfpm.PrepareForPackager(&ic, format); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range ic.Contents {
		lines = append(lines, fmt.Sprintf("%-10s %s %s:%s %s", c.Type, c.FileInfo.Mode, c.FileInfo.Owner, c.FileInfo.Group, c.Destination))
	}
	sort.Strings(lines)
	head := fmt.Sprintf("package %s %s %s\ndepends %v\nscripts pre-install=%s post-install=%s pre-remove=%s post-remove=%s\n",
		ic.Name, ic.Version, ic.Arch, ic.Depends,
		base(ic.Scripts.PreInstall), base(ic.Scripts.PostInstall), base(ic.Scripts.PreRemove), base(ic.Scripts.PostRemove))
	return []byte(head + strings.Join(lines, "\n") + "\n")
}

func base(p string) string {
	if p == "" {
		return "-"
	}
	return filepath.Base(p)
}

func testOptions(t *testing.T) pkgOptions {
	dir := t.TempDir()
	u, err := unit(defaultUnit)
	if err != nil {
		t.Fatal(err)
	}
	unitFile := filepath.Join(dir, "edgecrd.service")
	if err := os.WriteFile(unitFile, u, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "scripts"), mustSub(t)); err != nil {
		t.Fatal(err)
	}
	return pkgOptions{Version: "1.2.3", Arch: "amd64", BinDir: fakeBinDir(t), Scripts: filepath.Join(dir, "scripts"), Unit: unitFile}
}

func TestPackageContentsGolden(t *testing.T) {
	o := testOptions(t)
	golden(t, "testdata/edgecrd.deb.golden", describe(t, devicePackage(o), "deb"))
	golden(t, "testdata/edgecr.deb.golden", describe(t, clientPackage(o), "deb"))
}

// The packages build; with dpkg-deb here, the .deb's files and control
// fields are what they should be.
func TestBuildPackages(t *testing.T) {
	o := testOptions(t)
	out := t.TempDir()
	for _, format := range []string{"deb", "rpm"} {
		for _, i := range []*nfpm.Info{devicePackage(o), clientPackage(o)} {
			name := filepath.Join(out, i.Name+"."+format)
			if err := writePackage(i, format, name); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(name); err != nil || fi.Size() == 0 {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	dd := testenv.NeedCommand(t, "dpkg-deb", "inspects the .deb")
	list, err := exec.Command(dd, "-c", filepath.Join(out, "edgecrd.deb")).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v\n%s", err, list)
	}
	for _, want := range []string{"./usr/bin/edgecrd", "./usr/lib/systemd/system/edgecrd.service", "./usr/share/edgecrd/dist/edgecr-windows-arm64.exe"} {
		if !strings.Contains(string(list), want) {
			t.Errorf("edgecrd.deb lacks %s:\n%s", want, list)
		}
	}
	ctl, err := exec.Command(dd, "-I", filepath.Join(out, "edgecrd.deb")).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -I: %v\n%s", err, ctl)
	}
	for _, want := range []string{"Package: edgecrd", "Version: 1.2.3", "Architecture: amd64", "preinst", "postinst", "prerm", "postrm"} {
		if !strings.Contains(string(ctl), want) {
			t.Errorf("edgecrd.deb control lacks %q:\n%s", want, ctl)
		}
	}
}

func mustSub(t *testing.T) fs.FS {
	sub, err := fs.Sub(scripts, "scripts")
	if err != nil {
		t.Fatal(err)
	}
	return sub
}
