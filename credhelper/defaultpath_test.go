package credhelper

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaultPath(t *testing.T) {
	tests := []struct {
		name string
		goos string
		env  map[string]string
		home string
		want string
	}{
		{"override", "linux", map[string]string{"EDGECR_CONFIG_DIR": "/srv/edgecr", "XDG_CONFIG_HOME": "/xdg"}, "/home/u", "/srv/edgecr/credentials.json"},
		{"override trailing slash", "linux", map[string]string{"EDGECR_CONFIG_DIR": "/srv/edgecr/"}, "", "/srv/edgecr/credentials.json"},
		{"override without home", "darwin", map[string]string{"EDGECR_CONFIG_DIR": "/opt/e"}, "", "/opt/e/credentials.json"},
		{"linux xdg", "linux", map[string]string{"XDG_CONFIG_HOME": "/xdg"}, "/home/u", "/xdg/edgecr/credentials.json"},
		{"linux relative xdg ignored", "linux", map[string]string{"XDG_CONFIG_HOME": "rel"}, "/home/u", "/home/u/.config/edgecr/credentials.json"},
		{"linux home", "linux", nil, "/home/u", "/home/u/.config/edgecr/credentials.json"},
		{"linux root", "linux", nil, "/root", "/root/.config/edgecr/credentials.json"},
		{"linux no home", "linux", nil, "", ""},
		{"freebsd", "freebsd", nil, "/home/u", "/home/u/.config/edgecr/credentials.json"},
		{"darwin", "darwin", map[string]string{"XDG_CONFIG_HOME": "/xdg"}, "/Users/u", "/Users/u/Library/Application Support/edgecr/credentials.json"},
		{"darwin no home", "darwin", nil, "", ""},
		{"windows appdata", "windows", map[string]string{"APPDATA": `C:\Users\u\AppData\Roaming`}, `C:\Users\u`, `C:\Users\u\AppData\Roaming\edgecr\credentials.json`},
		{"windows no appdata", "windows", nil, `C:\Users\u`, `C:\Users\u\AppData\Roaming\edgecr\credentials.json`},
		{"windows override", "windows", map[string]string{"EDGECR_CONFIG_DIR": `D:\edgecr\`}, `C:\Users\u`, `D:\edgecr\credentials.json`},
		{"windows nothing", "windows", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DefaultPath(tt.goos, mapEnv(tt.env), tt.home); got != tt.want {
				t.Errorf("DefaultPath(%q, %v, %q) = %q, want %q", tt.goos, tt.env, tt.home, got, tt.want)
			}
		})
	}
}

// TestDefaultPathAgreesWithUserConfigDir checks the pure function against
// the standard library on the OS running the test.
func TestDefaultPathAgreesWithUserConfigDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("EDGECR_CONFIG_DIR", "")
	if runtime.GOOS == "windows" {
		t.Setenv("APPDATA", filepath.Join(home, "AppData", "Roaming"))
	}
	cfg, err := os.UserConfigDir()
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(cfg, "edgecr", "credentials.json")
	if got := DefaultPath(runtime.GOOS, os.Getenv, home); got != want {
		t.Errorf("DefaultPath = %q, os.UserConfigDir gives %q", got, want)
	}
}

func TestDockerConfigDir(t *testing.T) {
	home := filepath.Join("home", "u")
	if got, want := DockerConfigDir(mapEnv(nil), home), filepath.Join(home, ".docker"); got != want {
		t.Errorf("DockerConfigDir without DOCKER_CONFIG = %q, want %q", got, want)
	}
	env := mapEnv(map[string]string{"DOCKER_CONFIG": filepath.Join("etc", "docker-cfg")})
	if got, want := DockerConfigDir(env, home), filepath.Join("etc", "docker-cfg"); got != want {
		t.Errorf("DockerConfigDir with DOCKER_CONFIG = %q, want %q", got, want)
	}
}
