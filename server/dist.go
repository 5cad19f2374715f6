package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/edgecr/edgecr/installers"
)

// distName is what a served agent binary is called:
// edgecr-<os>-<arch>[.exe] or docker-credential-edgecr-<os>-<arch>[.exe].
var distName = regexp.MustCompile(`^(edgecr|docker-credential-edgecr)-(linux|darwin|windows)-(amd64|arm64)(\.exe)?$`)

// dist serves what a client with nothing installed needs: the install
// scripts, the agent binaries from the dist dir, and their SHA256SUMS,
// computed once at start so that a binary changed afterwards no longer
// matches the list the scripts check it against.
type dist struct {
	dir     string
	files   map[string]bool // the binaries listed in sums
	sums    []byte          // sha256sum format
	started time.Time
	missing string // why /dist/ serves nothing; empty when it does
}

// newDist reads dir's agent binaries. A dist dir that is not set or does
// not exist is not an error: the scripts are still served and /dist/
// answers 404 saying why.
func newDist(dir string, log *slog.Logger, now time.Time) (*dist, error) {
	d := &dist{dir: dir, files: map[string]bool{}, started: now}
	if dir == "" {
		d.missing = "edgecrd serves no agent binaries: it was started without --dist-dir\n"
		return d, nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		log.Warn("dist dir not found: /dist/ serves nothing", "dir", dir)
		d.missing = fmt.Sprintf("edgecrd serves no agent binaries: its --dist-dir %s does not exist\n", dir)
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading dist dir: %w", err)
	}
	var lines []string
	for _, e := range entries {
		if !distName.MatchString(e.Name()) {
			continue
		}
		// Links to the binaries are fine (a package's dist dir may link
		// to binaries installed elsewhere); directories and devices not.
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err != nil || !fi.Mode().IsRegular() {
			log.Warn("dist dir entry is not a regular file: not served", "name", e.Name())
			continue
		}
		sum, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("hashing dist file: %w", err)
		}
		d.files[e.Name()] = true
		lines = append(lines, sum+"  "+e.Name()+"\n")
	}
	if len(lines) == 0 {
		log.Warn("dist dir holds no agent binaries (edgecr-<os>-<arch>[.exe], docker-credential-edgecr-<os>-<arch>[.exe])", "dir", dir)
		d.missing = fmt.Sprintf("edgecrd serves no agent binaries: its --dist-dir %s holds no edgecr-<os>-<arch> files\n", dir)
		return d, nil
	}
	sort.Strings(lines)
	d.sums = []byte(strings.Join(lines, ""))
	log.Info("serving agent binaries", "dir", dir, "files", len(lines))
	return d, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (d *dist) register(mux *http.ServeMux) {
	mux.Handle("GET /install.sh", named("install", d.script("install.sh", "text/x-shellscript; charset=utf-8")))
	mux.Handle("GET /install.ps1", named("install", d.script("install.ps1", "text/plain; charset=utf-8")))
	mux.Handle("GET /dist/", named("dist", http.HandlerFunc(d.serveDist)))
}

func (d *dist) script(name, contentType string) http.Handler {
	b, err := installers.Scripts.ReadFile(name)
	if err != nil {
		panic("installers: " + name + " not embedded") // a build error, not a runtime one
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-store")
		http.ServeContent(w, r, name, d.started, bytes.NewReader(b))
	})
}

func (d *dist) serveDist(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/dist/")
	if d.missing != "" {
		http.Error(w, d.missing, http.StatusNotFound)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if name == "SHA256SUMS" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		http.ServeContent(w, r, name, d.started, bytes.NewReader(d.sums))
		return
	}
	if !d.files[name] {
		http.Error(w, fmt.Sprintf("no agent binary %q here: see /dist/SHA256SUMS for what this device serves\n", name), http.StatusNotFound)
		return
	}
	f, err := os.Open(filepath.Join(d.dir, name))
	if err != nil {
		http.Error(w, fmt.Sprintf("agent binary %q is gone from the dist dir\n", name), http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "reading agent binary failed\n", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, fi.ModTime(), f)
}
