package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// Paths of distribution's storage layout, as driver paths (server/gcpaths.go
// has the same; distribution keeps its path mapper unexported).
const (
	v2Root    = "/docker/registry/v2"
	trashRoot = v2Root + "/_edgecr_gc_trash"
)

// blobDataRE is a blob's data file; its path names the digest.
var blobDataRE = regexp.MustCompile(`^/docker/registry/v2/blobs/(sha256|sha512)/[0-9a-f]{2}/([0-9a-f]{64}|[0-9a-f]{128})/data$`)

// smallFile is the size up to which a file is copied in one PutContent.
const smallFile = 8 << 20

// item is one image file to copy: from src in the data dir to dst in the
// bucket (the same path, except for a collector's trash).
type item struct {
	src, dst string
	size     int64
}

// plan maps a source file to its destination; ok is false for what is
// not migrated: upload sessions in progress (a client restarts the push:
// the bucket's driver keeps uploads in its own form), and trash items whose
// original is back in place. An interrupted garbage collection's trash is
// put back, as the collector's next run would have done.
func plan(ctx context.Context, src storagedriver.StorageDriver, p string) (dst string, ok bool, err error) {
	if !strings.HasPrefix(p, v2Root+"/") {
		return p, true, nil // not distribution's: copied as it is
	}
	if strings.Contains(p, "/_uploads/") && strings.HasPrefix(p, v2Root+"/repositories/") {
		return "", false, nil
	}
	if rest, ok := strings.CutPrefix(p, trashRoot+"/"); ok {
		_, item, found := strings.Cut(rest, "/") // <run>/<original path under v2Root>
		if !found {
			return "", false, nil
		}
		orig := path.Join(v2Root, item)
		if !strings.HasPrefix(orig, v2Root+"/") || strings.HasPrefix(orig, trashRoot+"/") || orig == trashRoot {
			return "", false, nil // not a path a collector trashes
		}
		if _, err := src.Stat(ctx, orig); err == nil {
			return "", false, nil
		} else if !isNotFound(err) {
			return "", false, fmt.Errorf("checking %s: %w", orig, err)
		}
		return orig, true, nil
	}
	return p, true, nil
}

func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

// copyImages copies every image file, in parallel.
func copyImages(ctx context.Context, src, dst storagedriver.StorageDriver, replace bool, o Options, rep *Report) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pr := &progress{w: o.Progress, every: o.ProgressEvery, last: time.Now(), rep: rep}
	items := make(chan item, 64)
	var wg sync.WaitGroup
	var seenMu sync.Mutex
	seen := map[string]bool{} // destinations, so two trash items for one path copy once
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range items {
				if ctx.Err() != nil {
					continue
				}
				res, n, err := copyFile(ctx, src, dst, it, replace)
				if err != nil {
					cancel(err)
					continue
				}
				pr.add(func(r *Report) {
					switch res {
					case copied:
						r.Objects++
						r.Bytes += n
					case replaced:
						r.Objects++
						r.Bytes += n
						r.Replaced++
					case skipped:
						r.Skipped++
						r.SkippedBytes += n
					}
				})
			}
		}()
	}
	walkErr := src.Walk(ctx, "/", func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		d, ok, err := plan(ctx, src, fi.Path())
		if err != nil || !ok {
			return err
		}
		seenMu.Lock()
		dup := seen[d]
		seen[d] = true
		seenMu.Unlock()
		if dup {
			return nil
		}
		pr.mu.Lock()
		pr.total++
		pr.mu.Unlock()
		select {
		case items <- item{src: fi.Path(), dst: d, size: fi.Size()}:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	close(items)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("migrating images: %w", err)
	}
	if walkErr != nil && !isNotFound(walkErr) {
		return fmt.Errorf("migrating images: listing the data dir's storage: %w", walkErr)
	}
	pr.mu.Lock()
	pr.printLocked("images")
	pr.mu.Unlock()
	return nil
}

type result int

const (
	copied result = iota
	skipped
	replaced
)

// copyFile copies one file unless the bucket already has it verified: a
// blob by its digest (the path's), anything else by content (the data
// dir's). A blob whose bucket copy does not verify is always replaced (its
// path fixes its content); anything else only when replace is set.
func copyFile(ctx context.Context, src, dst storagedriver.StorageDriver, it item, replace bool) (result, int64, error) {
	want, newHash, isBlob := blobDigest(it.src)
	fi, err := dst.Stat(ctx, it.dst)
	switch {
	case err == nil && fi.IsDir():
		return 0, 0, fmt.Errorf("%s: the bucket has a directory there: %w", it.dst, ErrConflict)
	case err == nil:
		if !isBlob {
			sum, err := hashFile(ctx, src, it.src, sha256.New)
			if err != nil {
				return 0, 0, fmt.Errorf("reading %s in the data dir: %w", it.src, err)
			}
			want, newHash = sum, sha256.New
		}
		have, err := hashFile(ctx, dst, it.dst, newHash)
		if err != nil {
			return 0, 0, fmt.Errorf("verifying %s in the bucket: %w", it.dst, err)
		}
		if have == want && fi.Size() == it.size {
			return skipped, it.size, nil
		}
		if !isBlob && !replace {
			return 0, 0, fmt.Errorf("%s in the bucket differs from the data dir's (the migration finished before, and replicas may have changed it since): %w", it.dst, ErrConflict)
		}
		if err := write(ctx, src, dst, it, want, newHash, isBlob); err != nil {
			return 0, 0, err
		}
		return replaced, it.size, nil
	case !isNotFound(err):
		return 0, 0, fmt.Errorf("checking %s in the bucket: %w", it.dst, err)
	}
	if err := write(ctx, src, dst, it, want, newHash, isBlob); err != nil {
		return 0, 0, err
	}
	return copied, it.size, nil
}

// blobDigest is the digest a blob's data path names and its hash.
func blobDigest(p string) (hexDigest string, newHash func() hash.Hash, ok bool) {
	m := blobDataRE.FindStringSubmatch(p)
	if m == nil {
		return "", nil, false
	}
	switch {
	case m[1] == "sha256" && len(m[2]) == 64:
		return m[2], sha256.New, true
	case m[1] == "sha512" && len(m[2]) == 128:
		return m[2], sha512.New, true
	}
	return "", nil, false
}

func hashFile(ctx context.Context, d storagedriver.StorageDriver, p string, newHash func() hash.Hash) (string, error) {
	r, err := d.Reader(ctx, p, 0)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := newHash()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// write copies it, hashing while copying. A blob whose bytes do not match
// its digest is not written (the data dir's copy is corrupt: an error that
// names it); anything else is read back and compared.
func write(ctx context.Context, src, dst storagedriver.StorageDriver, it item, want string, newHash func() hash.Hash, isBlob bool) error {
	r, err := src.Reader(ctx, it.src, 0)
	if err != nil {
		return fmt.Errorf("reading %s in the data dir: %w", it.src, err)
	}
	defer r.Close()
	if !isBlob {
		newHash = sha256.New
	}
	h := newHash()
	tr := io.TeeReader(r, h)
	checkBlob := func() error {
		if got := hex.EncodeToString(h.Sum(nil)); isBlob && got != want {
			return fmt.Errorf("blob %s in the data dir does not match its digest (it hashes to %s): the data dir is damaged; nothing was written for it", it.src, got)
		}
		return nil
	}
	if it.size <= smallFile {
		b, err := io.ReadAll(io.LimitReader(tr, smallFile+1))
		if err != nil {
			return fmt.Errorf("reading %s in the data dir: %w", it.src, err)
		}
		if err := checkBlob(); err != nil {
			return err
		}
		if err := dst.PutContent(ctx, it.dst, b); err != nil {
			return fmt.Errorf("writing %s to the bucket: %w", it.dst, err)
		}
		if !isBlob {
			back, err := dst.GetContent(ctx, it.dst)
			if err != nil {
				return fmt.Errorf("reading %s back from the bucket: %w", it.dst, err)
			}
			if !bytes.Equal(back, b) {
				return fmt.Errorf("%s in the bucket differs from what was written (another writer?)", it.dst)
			}
			return nil
		}
	} else {
		w, err := dst.Writer(ctx, it.dst, false)
		if err != nil {
			return fmt.Errorf("writing %s to the bucket: %w", it.dst, err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			w.Cancel(context.WithoutCancel(ctx))
			w.Close()
			return fmt.Errorf("copying %s to the bucket: %w", it.src, err)
		}
		if err := checkBlob(); err != nil {
			w.Cancel(context.WithoutCancel(ctx))
			w.Close()
			return err
		}
		if err := w.Commit(ctx); err != nil {
			w.Close()
			return fmt.Errorf("writing %s to the bucket: %w", it.dst, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("writing %s to the bucket: %w", it.dst, err)
		}
	}
	fi, err := dst.Stat(ctx, it.dst)
	if err != nil {
		return fmt.Errorf("checking %s in the bucket after writing it: %w", it.dst, err)
	}
	if fi.Size() != it.size {
		return fmt.Errorf("%s in the bucket has %d bytes after writing %d", it.dst, fi.Size(), it.size)
	}
	return nil
}
