package server

import (
	"bytes"
	"net/http"
	"os"
	"path"
	"strconv"
	"time"
)

// serveBlobFile answers GET and HEAD of a blob on local disk itself, as
// distribution's blob server would (registry/handlers/blob.go,
// registry/storage/blobserver.go: the same headers, http.ServeContent for
// ranges and conditional requests), without distribution's reader, which
// holds a 4 MiB buffer per request: 50 concurrent pullers kept edgecrd at
// 300-390 MiB (issue 14). It serves only a blob the repository links
// (_layers/<alg>/<hex>/link naming it) whose data file opens; anything
// else (an unlinked blob, a sha512 one, a bucket) it leaves to
// distribution, which answers as before. It reports whether it answered.
func serveBlobFile(w http.ResponseWriter, r *http.Request, root, repo string, d digest) bool {
	if root == "" || d.Algorithm() != "sha256" {
		return false
	}
	link, err := os.ReadFile(osPath(root, path.Join(layerLinkDir(repo, d), "link")))
	if err != nil || !bytes.Equal(bytes.TrimSpace(link), []byte(d)) {
		return false
	}
	f, err := os.Open(osPath(root, blobDataPath(d)))
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	h := w.Header()
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	http.ServeContent(w, r, d.String(), time.Time{}, f)
	return true
}
