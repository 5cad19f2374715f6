package trust_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/edgecr/edgecr/trust"
)

// osRelease fixtures, trimmed from the distributions' own files.
var osReleases = map[string]string{
	"ubuntu": `PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
`,
	"debian": `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
`,
	"fedora": `NAME="Fedora Linux"
VERSION="40 (Container Image)"
ID=fedora
VERSION_ID=40
`,
	"rhel": `NAME="Red Hat Enterprise Linux"
VERSION="9.4 (Plow)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="9.4"
`,
	"rocky": `NAME="Rocky Linux"
ID="rocky"
ID_LIKE="rhel centos fedora"
`,
	"arch": `NAME="Arch Linux"
PRETTY_NAME="Arch Linux"
ID=arch
BUILD_ID=rolling
`,
	"manjaro": `NAME="Manjaro Linux"
ID="manjaro"
ID_LIKE="arch"
`,
	"alpine": `NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.20.3
`,
	"mint": `NAME="Linux Mint"
ID=linuxmint
ID_LIKE="ubuntu debian"
`,
}

func TestDetectKindFromOSRelease(t *testing.T) {
	none := func(string) bool { return false }
	for _, tc := range []struct {
		fixture string
		want    trust.Kind
	}{
		{"ubuntu", trust.Debian},
		{"debian", trust.Debian},
		{"mint", trust.Debian},
		{"fedora", trust.RHEL},
		{"rhel", trust.RHEL},
		{"rocky", trust.RHEL},
		{"arch", trust.Arch},
		{"manjaro", trust.Arch},
		{"alpine", trust.Alpine},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			got, err := trust.DetectKind("linux", "/", []byte(osReleases[tc.fixture]), none)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("DetectKind = %q, want %q", got, tc.want)
			}
		})
	}
}

// The smallstep/truststore pitfall: on Ubuntu with a stray RHEL anchor
// directory, the first-existing-path rule picks RHEL. os-release must win.
func TestDetectKindOSReleaseBeatsStrayAnchorDir(t *testing.T) {
	all := func(string) bool { return true }
	got, err := trust.DetectKind("linux", "/", []byte(osReleases["ubuntu"]), all)
	if err != nil {
		t.Fatal(err)
	}
	if got != trust.Debian {
		t.Errorf("DetectKind = %q, want debian", got)
	}
}

func TestDetectKindFromAnchorDirs(t *testing.T) {
	root := "/target"
	for _, tc := range []struct {
		name    string
		present []string
		want    trust.Kind
		wantErr bool
	}{
		{"debian anchors", []string{"/target/usr/local/share/ca-certificates"}, trust.Debian, false},
		{"alpine anchors", []string{"/target/usr/local/share/ca-certificates", "/target/etc/alpine-release"}, trust.Alpine, false},
		{"rhel anchors", []string{"/target/etc/pki/ca-trust/source/anchors"}, trust.RHEL, false},
		{"arch anchors", []string{"/target/etc/ca-certificates/trust-source/anchors"}, trust.Arch, false},
		{"ambiguous", []string{"/target/usr/local/share/ca-certificates", "/target/etc/pki/ca-trust/source/anchors"}, "", true},
		{"nothing", nil, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exists := func(p string) bool {
				for _, q := range tc.present {
					if filepath.Clean(p) == q {
						return true
					}
				}
				return false
			}
			got, err := trust.DetectKind("linux", root, []byte("ID=gentoo\n"), exists)
			if tc.wantErr {
				if !errors.Is(err, trust.ErrUnsupported) {
					t.Fatalf("DetectKind = %q, %v; want ErrUnsupported", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DetectKind = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestDetectKindByGOOS(t *testing.T) {
	none := func(string) bool { return false }
	for goos, want := range map[string]trust.Kind{"darwin": trust.MacOS, "windows": trust.Windows} {
		if got, err := trust.DetectKind(goos, "/", nil, none); err != nil || got != want {
			t.Errorf("DetectKind(%s) = %q, %v; want %q", goos, got, err, want)
		}
	}
	if _, err := trust.DetectKind("plan9", "/", nil, none); !errors.Is(err, trust.ErrUnsupported) {
		t.Errorf("DetectKind(plan9) error = %v, want ErrUnsupported", err)
	}
}

func TestParseOSRelease(t *testing.T) {
	got := trust.ParseOSRelease([]byte("# comment\nID=\"rhel\"\nID_LIKE='fedora'\nNAME=\"Quoted \\\"name\\\"\"\nbroken line\n\nVERSION_ID=9\n"))
	want := map[string]string{"ID": "rhel", "ID_LIKE": "fedora", "NAME": `Quoted "name"`, "VERSION_ID": "9"}
	if len(got) != len(want) {
		t.Fatalf("ParseOSRelease = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// OpenStore reads the root's own os-release, falling back to
// /usr/lib/os-release, and never the live system's.
func TestOpenStoreReadsRootOSRelease(t *testing.T) {
	for _, tc := range []struct {
		path, fixture string
		want          trust.Kind
	}{
		{"etc/os-release", "fedora", trust.RHEL},
		{"usr/lib/os-release", "arch", trust.Arch},
		{"etc/os-release", "alpine", trust.Alpine},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			root := t.TempDir()
			writeFile(t, filepath.Join(root, tc.path), osReleases[tc.fixture])
			_, kind, err := trust.OpenStore("linux", root, nil)
			if err != nil {
				t.Fatal(err)
			}
			if kind != tc.want {
				t.Errorf("kind = %q, want %q", kind, tc.want)
			}
		})
	}
}

func TestNewStoreRefusesRelocatedMacOSAndWindows(t *testing.T) {
	for _, k := range []trust.Kind{trust.MacOS, trust.Windows} {
		if _, err := trust.NewStore(k, t.TempDir(), nil); !errors.Is(err, trust.ErrUnsupported) {
			t.Errorf("NewStore(%s, tempdir) error = %v, want ErrUnsupported", k, err)
		}
	}
	if _, err := trust.NewStore("solaris", "/", nil); !errors.Is(err, trust.ErrUnsupported) {
		t.Errorf("NewStore(solaris) error = %v, want ErrUnsupported", err)
	}
}
