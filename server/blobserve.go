package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strconv"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// serveBlobFile answers GET and HEAD of a blob on local disk itself, as
// distribution's blob server would (registry/handlers/blob.go,
// registry/storage/blobserver.go: the same headers, http.ServeContent for
// ranges and conditional requests), without distribution's reader, which
// holds a 4 MiB buffer per request: 50 concurrent pullers kept edgecrd at
// 300-390 MiB (issue 14). It serves only a blob the repository links
// (_layers/<alg>/<hex>/link naming it) whose data file opens; anything
// else (an unlinked blob, a sha512 one) it leaves to
// distribution, which answers as before; serveBlobStored serves a bucket.
// It reports whether it answered.
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
	serveBlob(w, r, d, fi.Size(), f)
	return true
}

// serveBlob answers with content of size bytes as distribution's blob
// server does: its headers, then http.ServeContent (ranges: 206;
// If-None-Match the ETag: 304; HEAD: no body).
func serveBlob(w http.ResponseWriter, r *http.Request, d digest, size int64, content io.ReadSeeker) {
	h := w.Header()
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	http.ServeContent(w, r, d.String(), time.Time{}, content)
}

// serveBlobStored is serveBlobFile on a bucket: the repository's link and
// the blob's size come from the storage driver d, the bytes from its
// Reader at the offset http.ServeContent seeks to, copied through the HTTP
// server's small buffer instead of distribution's 4 MiB reader (50
// pullers kept edgecrd on a bucket at 186 MiB). Whatever it does not
// serve (no link, a link to another digest, no blob) it leaves to
// distribution, as serveBlobFile does; when the store does not answer it
// answers 503 itself (asking again through distribution would double the
// wait).
func serveBlobStored(w http.ResponseWriter, r *http.Request, d storagedriver.StorageDriver, repo string, dg digest) bool {
	if d == nil || dg.Algorithm() != "sha256" {
		return false
	}
	ctx := r.Context()
	down := func(err error) bool {
		if !storeFailure(ctx, err) {
			return false
		}
		writeStoreDown(w, "object store unavailable: "+storeReason(err))
		return true
	}
	link, err := d.GetContent(ctx, path.Join(layerLinkDir(repo, dg), "link"))
	if err != nil || !bytes.Equal(bytes.TrimSpace(link), []byte(dg)) {
		return down(err)
	}
	p := blobDataPath(dg)
	fi, err := d.Stat(ctx, p)
	if err != nil || fi.IsDir() {
		return down(err)
	}
	rs := &driverReadSeeker{ctx: ctx, d: d, path: p, size: fi.Size()}
	defer rs.close()
	serveBlob(w, r, dg, fi.Size(), rs)
	return true
}

// driverReadSeeker reads an object of a storage driver as an
// io.ReadSeeker: a seek only moves the offset; the first read after it
// opens the driver's Reader there (one GET from the offset on a bucket).
type driverReadSeeker struct {
	ctx       context.Context
	d         storagedriver.StorageDriver
	path      string
	size, off int64
	rc        io.ReadCloser // open at off; nil until a read
}

func (s *driverReadSeeker) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	if s.rc == nil {
		rc, err := s.d.Reader(s.ctx, s.path, s.off)
		if err != nil {
			return 0, fmt.Errorf("reading %s from offset %d: %w", s.path, s.off, err)
		}
		s.rc = rc
	}
	n, err := s.rc.Read(p)
	s.off += int64(n)
	if err == io.EOF && s.off < s.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (s *driverReadSeeker) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += s.off
	case io.SeekEnd:
		offset += s.size
	}
	if offset < 0 {
		return s.off, fmt.Errorf("seeking %s to %d: negative offset", s.path, offset)
	}
	if offset != s.off {
		s.close()
		s.off = offset
	}
	return s.off, nil
}

func (s *driverReadSeeker) close() {
	if s.rc != nil {
		s.rc.Close()
		s.rc = nil
	}
}
