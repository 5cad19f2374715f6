package trust_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
	"github.com/google/go-cmp/cmp"
)

const testReg = "ecr.dev1.example.com:31001"

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultRuntimePaths(t *testing.T) {
	linux, err := trust.DefaultRuntimePaths("linux", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := trust.RuntimePaths{
		GOOS:       "linux",
		Docker:     "/etc/docker/certs.d",
		Containerd: "/etc/containerd/certs.d",
		Containers: "/etc/containers/certs.d",
		K3sConfig:  "/etc/rancher/k3s/registries.yaml",
		K3sCADir:   "/etc/rancher/k3s/edgecr",
	}
	if diff := cmp.Diff(want, linux); diff != "" {
		t.Errorf("linux (-want +got):\n%s", diff)
	}
	darwin, err := trust.DefaultRuntimePaths("darwin", env(map[string]string{"HOME": "/Users/ana"}))
	if err != nil || darwin != (trust.RuntimePaths{GOOS: "darwin", Docker: "/Users/ana/.docker/certs.d"}) {
		t.Errorf("darwin = %+v, %v", darwin, err)
	}
	windows, err := trust.DefaultRuntimePaths("windows", env(map[string]string{"ProgramData": `C:\ProgramData`}))
	if err != nil || windows != (trust.RuntimePaths{GOOS: "windows", Docker: `C:\ProgramData\docker\certs.d`}) {
		t.Errorf("windows = %+v, %v", windows, err)
	}
	if _, err := trust.DefaultRuntimePaths("darwin", env(nil)); err == nil {
		t.Errorf("darwin without HOME: no error")
	}
	if _, err := trust.DefaultRuntimePaths("windows", env(nil)); err == nil {
		t.Errorf("windows without ProgramData: no error")
	}
	if _, err := trust.DefaultRuntimePaths("freebsd", env(nil)); !errors.Is(err, trust.ErrUnsupported) {
		t.Errorf("freebsd: %v, want ErrUnsupported", err)
	}
}

func TestDockerDesktopRestart(t *testing.T) {
	for goos, want := range map[string]bool{"linux": false, "darwin": true, "windows": true} {
		if got := trust.NeedsDockerDesktopRestart(goos); got != want {
			t.Errorf("NeedsDockerDesktopRestart(%s) = %v", goos, got)
		}
		if got := trust.DockerDesktopRestartMessage(goos) != ""; got != want {
			t.Errorf("DockerDesktopRestartMessage(%s) non-empty = %v", goos, got)
		}
	}
}

func TestDetectRuntimes(t *testing.T) {
	linux, _ := trust.DefaultRuntimePaths("linux", env(nil))
	darwin, _ := trust.DefaultRuntimePaths("darwin", env(map[string]string{"HOME": "/Users/ana"}))
	windows, _ := trust.DefaultRuntimePaths("windows", env(map[string]string{"ProgramData": `C:\ProgramData`}))
	for _, tc := range []struct {
		name    string
		paths   trust.RuntimePaths
		root    string
		present []string
		want    []trust.Runtime
	}{
		{"nothing", linux, "/r", nil, nil},
		{"config dirs", linux, "/r", []string{"/r/etc/docker", "/r/etc/containerd", "/r/etc/containers", "/r/etc/rancher/k3s"},
			[]trust.Runtime{trust.Docker, trust.Containerd, trust.Containers, trust.K3s}},
		{"binaries only", linux, "/r", []string{"/r/usr/bin/dockerd", "/r/usr/local/bin/containerd", "/r/usr/bin/crio", "/r/usr/local/bin/k3s"},
			[]trust.Runtime{trust.Docker, trust.Containerd, trust.Containers, trust.K3s}},
		{"podman only", linux, "/", []string{"/usr/bin/podman"}, []trust.Runtime{trust.Containers}},
		{"probes stay under root", linux, "/r", []string{"/etc/docker", "/usr/bin/docker"}, nil},
		{"docker desktop mac", darwin, "/", []string{"/Applications/Docker.app"}, []trust.Runtime{trust.Docker}},
		{"docker cli config mac", darwin, "/", []string{"/Users/ana/.docker"}, []trust.Runtime{trust.Docker}},
		{"mac has no containerd", darwin, "/", []string{"/etc/containerd"}, nil},
		{"docker windows", windows, "/", []string{`C:\ProgramData\docker`}, []trust.Runtime{trust.Docker}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := trust.DetectRuntimes(tc.root, tc.paths, func(p string) bool { return slices.Contains(tc.present, p) })
			if !slices.Equal(got, tc.want) {
				t.Errorf("DetectRuntimes = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlanRuntimesLinux(t *testing.T) {
	ca := trusttest.NewCA(t, "device CA")
	paths, _ := trust.DefaultRuntimePaths("linux", env(nil))
	plan, err := trust.PlanRuntimes(paths, testReg, ca, trust.AllRuntimes())
	if err != nil {
		t.Fatal(err)
	}
	hosts := `# Written by edgecr: trust the CA of the edge registry ecr.dev1.example.com:31001.
# "edgecr leave" removes this file.
server = "https://ecr.dev1.example.com:31001"

[host."https://ecr.dev1.example.com:31001"]
  ca = "/etc/containerd/certs.d/ecr.dev1.example.com:31001/ca.crt"
`
	want := trust.RuntimePlan{
		GOOS:     "linux",
		Registry: testReg,
		Runtimes: trust.AllRuntimes(),
		Files: []trust.PlannedFile{
			{Runtime: trust.Docker, Path: "/etc/docker/certs.d/ecr.dev1.example.com:31001/ca.crt", Content: ca},
			{Runtime: trust.Containerd, Path: "/etc/containerd/certs.d/ecr.dev1.example.com:31001/ca.crt", Content: ca},
			{Runtime: trust.Containerd, Path: "/etc/containerd/certs.d/ecr.dev1.example.com:31001/hosts.toml", Content: []byte(hosts)},
			{Runtime: trust.Containers, Path: "/etc/containers/certs.d/ecr.dev1.example.com:31001/ca.crt", Content: ca},
			{Runtime: trust.K3s, Path: "/etc/rancher/k3s/edgecr/ecr.dev1.example.com:31001/ca.crt", Content: ca},
		},
		K3s: &trust.K3sEdit{
			Path:     "/etc/rancher/k3s/registries.yaml",
			Registry: testReg,
			CAFile:   "/etc/rancher/k3s/edgecr/ecr.dev1.example.com:31001/ca.crt",
		},
		Notices: []string{trust.K3sRestartMessage},
	}
	if diff := cmp.Diff(want, plan); diff != "" {
		t.Errorf("PlanRuntimes (-want +got):\n%s", diff)
	}
}

func TestPlanRuntimesDockerDesktop(t *testing.T) {
	ca := trusttest.NewCA(t, "device CA")
	windows, _ := trust.DefaultRuntimePaths("windows", env(map[string]string{"ProgramData": `C:\ProgramData`}))
	plan, err := trust.PlanRuntimes(windows, testReg, ca, []trust.Runtime{trust.Docker})
	if err != nil {
		t.Fatal(err)
	}
	// Docker on Windows drops the colon from the directory name.
	if len(plan.Files) != 1 || plan.Files[0].Path != `C:\ProgramData\docker\certs.d\ecr.dev1.example.com31001\ca.crt` {
		t.Errorf("windows files = %+v", plan.Files)
	}
	if len(plan.Notices) != 1 || plan.Notices[0] != trust.DockerDesktopRestartMessage("windows") {
		t.Errorf("windows notices = %v", plan.Notices)
	}
	darwin, _ := trust.DefaultRuntimePaths("darwin", env(map[string]string{"HOME": "/Users/ana"}))
	plan, err = trust.PlanRuntimes(darwin, testReg, ca, []trust.Runtime{trust.Docker})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Files) != 1 || plan.Files[0].Path != "/Users/ana/.docker/certs.d/ecr.dev1.example.com:31001/ca.crt" || len(plan.Notices) != 1 {
		t.Errorf("darwin plan = %+v", plan)
	}
	if _, err := trust.PlanRuntimes(darwin, testReg, ca, []trust.Runtime{trust.Containerd}); !errors.Is(err, trust.ErrUnsupported) {
		t.Errorf("containerd on darwin: %v, want ErrUnsupported", err)
	}
}

func TestPlanRuntimesRegistryAddress(t *testing.T) {
	ca := trusttest.NewCA(t, "device CA")
	paths, _ := trust.DefaultRuntimePaths("linux", env(nil))
	for in, want := range map[string]string{
		"ecr.dev1.example.com:31001": "ecr.dev1.example.com:31001",
		"10.0.0.7:31001":             "10.0.0.7:31001",
		"[::1]:5000":                 "[::1]:5000",
		"[0:0::1]:5000":              "[::1]:5000",
		"registry.local":             "registry.local",
		"[fe80::1]":                  "[fe80::1]",
	} {
		plan, err := trust.PlanRuntimes(paths, in, ca, []trust.Runtime{trust.Docker})
		if err != nil || plan.Registry != want {
			t.Errorf("registry %q: %q, %v; want %q", in, plan.Registry, err, want)
		}
	}
	for _, in := range []string{"", "../../etc:5000", "a/b:5000", "..:5000", "host:0", "host:65536", "host:", ":5000", "host:05000", "::1", "-bad.example:1", "host:5000/path"} {
		if _, err := trust.PlanRuntimes(paths, in, ca, []trust.Runtime{trust.Docker}); !errors.Is(err, trust.ErrInvalidRegistry) {
			t.Errorf("registry %q: error %v, want ErrInvalidRegistry", in, err)
		}
	}
}
