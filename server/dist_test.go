package server

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/installers"
)

func get(t *testing.T, ts *testServer, path string) (int, string) {
	t.Helper()
	resp := ts.do(http.MethodGet, path, "", "", nil, nil)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func TestDistServesScriptsBinariesAndSums(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"edgecr-linux-amd64":                         "agent linux",
		"docker-credential-edgecr-linux-amd64":       "helper linux",
		"edgecr-windows-arm64.exe":                   "agent windows",
		"docker-credential-edgecr-darwin-arm64":      "helper darwin",
		"README":                                     "not served",
		"edgecr-plan9-amd64":                         "not served",
		"edgecr-linux-amd64.exe.bak":                 "not served",
		"docker-credential-edgecr-windows-amd64.exe": "helper windows",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A link to a binary is served; a directory with a binary's name not.
	if err := os.Symlink("edgecr-linux-amd64", filepath.Join(dir, "edgecr-darwin-amd64")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "edgecr-linux-arm64"), 0o755); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(o *Options) { o.DistDir = dir })
	linked := sha256.Sum256([]byte(files["edgecr-linux-amd64"]))

	for _, name := range []string{"install.sh", "install.ps1"} {
		want, _ := installers.Scripts.ReadFile(name)
		code, body := get(t, ts, "/"+name)
		if code != http.StatusOK || body != string(want) {
			t.Errorf("GET /%s: %d, %d bytes; want 200 and the embedded script (%d bytes)", name, code, len(body), len(want))
		}
	}

	wantSums := []string{hex.EncodeToString(linked[:]) + "  edgecr-darwin-amd64"}
	if code, body := get(t, ts, "/dist/edgecr-darwin-amd64"); code != http.StatusOK || body != files["edgecr-linux-amd64"] {
		t.Errorf("GET /dist/edgecr-darwin-amd64 (a link): %d %q", code, body)
	}
	if code, _ := get(t, ts, "/dist/edgecr-linux-arm64"); code != http.StatusNotFound {
		t.Errorf("GET /dist/edgecr-linux-arm64 (a directory): %d, want 404", code)
	}
	for n, c := range files {
		if !distName.MatchString(n) {
			code, _ := get(t, ts, "/dist/"+n)
			if code != http.StatusNotFound {
				t.Errorf("GET /dist/%s: %d, want 404", n, code)
			}
			continue
		}
		sum := sha256.Sum256([]byte(c))
		wantSums = append(wantSums, hex.EncodeToString(sum[:])+"  "+n)
		code, body := get(t, ts, "/dist/"+n)
		if code != http.StatusOK || body != c {
			t.Errorf("GET /dist/%s: %d %q, want 200 %q", n, code, body, c)
		}
	}
	code, sums := get(t, ts, "/dist/SHA256SUMS")
	if code != http.StatusOK {
		t.Fatalf("GET /dist/SHA256SUMS: %d", code)
	}
	lines := strings.Split(strings.TrimSuffix(sums, "\n"), "\n")
	if len(lines) != len(wantSums) {
		t.Fatalf("SHA256SUMS has %d lines, want %d:\n%s", len(lines), len(wantSums), sums)
	}
	for _, w := range wantSums {
		if !strings.Contains(sums, w+"\n") {
			t.Errorf("SHA256SUMS lacks %q:\n%s", w, sums)
		}
	}

	// The list is computed at start: a binary changed afterwards is served
	// as it now is, and no longer matches it (the scripts then refuse it).
	if err := os.WriteFile(filepath.Join(dir, "edgecr-linux-amd64"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, again := get(t, ts, "/dist/SHA256SUMS"); again != sums {
		t.Errorf("SHA256SUMS changed after start:\n%s", again)
	}

	for _, p := range []string{"/dist/../server.key", "/dist/", "/dist/edgecr-linux-riscv64", "/install.sh/x"} {
		if code, _ := get(t, ts, p); code != http.StatusNotFound && code != http.StatusMovedPermanently {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
}

func TestDistWithoutBinaries(t *testing.T) {
	cases := []struct {
		name string
		dir  func(t *testing.T) string
		want string
	}{
		{"no flag", func(*testing.T) string { return "" }, "started without --dist-dir"},
		{"missing dir", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, "does not exist"},
		{"empty dir", func(t *testing.T) string { return t.TempDir() }, "holds no edgecr-<os>-<arch> files"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			ts := startServer(t, func(o *Options) { o.DistDir = dir })
			if code, _ := get(t, ts, "/install.sh"); code != http.StatusOK {
				t.Errorf("GET /install.sh: %d, want 200", code)
			}
			if code, _ := get(t, ts, "/install.ps1"); code != http.StatusOK {
				t.Errorf("GET /install.ps1: %d, want 200", code)
			}
			for _, p := range []string{"/dist/SHA256SUMS", "/dist/edgecr-linux-amd64"} {
				code, body := get(t, ts, p)
				if code != http.StatusNotFound || !strings.Contains(body, tc.want) {
					t.Errorf("GET %s: %d %q, want 404 saying %q", p, code, body, tc.want)
				}
			}
		})
	}
}
