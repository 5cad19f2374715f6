package trust_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/trust"
)

func TestDetectDesktopVMs(t *testing.T) {
	env := map[string]string{
		"ProgramFiles": `C:\Program Files`,
		"ProgramData":  `C:\ProgramData`,
		"LOCALAPPDATA": `C:\Users\ann\AppData\Local`,
	}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		name, goos, home string
		files            []string
		want             []trust.DesktopVM
	}{
		{"mac with nothing", "darwin", "/Users/ann", nil, nil},
		{"mac Docker Desktop", "darwin", "/Users/ann", []string{"/Applications/Docker.app"}, []trust.DesktopVM{trust.DockerDesktop}},
		{"mac colima and podman", "darwin", "/Users/ann",
			[]string{"/Users/ann/.colima", "/Users/ann/.config/containers/podman/machine"},
			[]trust.DesktopVM{trust.Colima, trust.PodmanMachine}},
		{"mac Rancher Desktop", "darwin", "/Users/ann", []string{"/Applications/Rancher Desktop.app"}, []trust.DesktopVM{trust.RancherDesktop}},
		// Issue 17: Docker Desktop on Windows has no C:\ProgramData\docker.
		{"windows Docker Desktop", "windows", `C:\Users\ann`, []string{`C:\Program Files\Docker\Docker\Docker Desktop.exe`}, []trust.DesktopVM{trust.DockerDesktop}},
		{"windows Rancher Desktop per user", "windows", `C:\Users\ann`,
			[]string{`C:\Users\ann\AppData\Local\Programs\Rancher Desktop\Rancher Desktop.exe`}, []trust.DesktopVM{trust.RancherDesktop}},
		{"windows podman machine", "windows", `C:\Users\ann`, []string{`C:\Users\ann\.config\containers\podman\machine`}, []trust.DesktopVM{trust.PodmanMachine}},
		{"linux has none", "linux", "/home/ann", []string{"/Applications/Docker.app"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exists := func(p string) bool { return slices.Contains(tc.files, p) }
			if got := trust.DetectDesktopVMs(tc.goos, tc.home, getenv, exists); !slices.Equal(got, tc.want) {
				t.Errorf("DetectDesktopVMs = %v, want %v", got, tc.want)
			}
		})
	}
	// No home and no environment: nothing is probed at a relative path.
	probed := []string{}
	trust.DetectDesktopVMs("windows", "", func(string) string { return "" }, func(p string) bool { probed = append(probed, p); return false })
	for _, p := range probed {
		if !strings.HasPrefix(p, `C:\`) && !strings.HasPrefix(p, "/") {
			t.Errorf("probed a relative path %q", p)
		}
	}
}

func TestDesktopVMNotice(t *testing.T) {
	reg := "ecr.box.internal:31001"
	for _, tc := range []struct {
		goos string
		vm   trust.DesktopVM
		ca   string
		want []string
	}{
		{"windows", trust.DockerDesktop, "", []string{"Windows Root store", "Restart"}},
		{"darwin", trust.DockerDesktop, "", []string{"keychain", "Restart"}},
		{"darwin", trust.Colima, "", []string{"`colima restart`"}},
		{"darwin", trust.RancherDesktop, "", []string{"rdctl shutdown", "rdctl start"}},
		{"darwin", trust.PodmanMachine, "/Users/ann/.docker/certs.d/" + reg + "/ca.crt",
			[]string{`podman machine ssh "sudo mkdir -p /etc/containers/certs.d/` + reg + ` && sudo tee /etc/containers/certs.d/` + reg + `/ca.crt >/dev/null" < /Users/ann/.docker/certs.d/` + reg + "/ca.crt"}},
		{"windows", trust.PodmanMachine, "", []string{"web UI, Certificates page"}},
		// PowerShell rejects < ("The '<' operator is reserved for future use").
		{"windows", trust.PodmanMachine, `C:\Users\ann\.docker\certs.d\` + reg + `\ca.crt`,
			[]string{`Get-Content -Raw C:\Users\ann\.docker\certs.d\` + reg + `\ca.crt | podman machine ssh "sudo mkdir -p`}},
	} {
		got := trust.DesktopVMNotice(tc.goos, tc.vm, reg, tc.ca)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("DesktopVMNotice(%s, %s) = %q, want it to say %q", tc.goos, tc.vm, got, w)
			}
		}
	}
}
