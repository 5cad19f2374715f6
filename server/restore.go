package server

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// RestoreOptions are the flags of restore.
type RestoreOptions struct {
	// IPs, when given, replace the device's IPs (a new machine); the server
	// certificate is then reissued under the same CA.
	IPs []net.IP
}

// Restore unpacks a backup (see backupIndexName) into dir, which must not
// exist or be empty, and returns the restored state: the same device (name,
// CA, server key, identities, tokens, images), so that joined clients keep
// working. The archive is checked completely (every file's SHA-256 against
// the index, every blob against its digest, the state against itself)
// before dir appears; on any error dir is as it was.
func Restore(ctx context.Context, r io.Reader, dir string, o RestoreOptions, now time.Time) (*State, error) {
	if err := checkRestoreTarget(dir); err != nil {
		return nil, err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("restoring into %s: %w", dir, err)
	}
	stage, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".restore-*")
	if err != nil {
		return nil, fmt.Errorf("restoring into %s: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(stage)
		}
	}()
	if err := os.Chmod(stage, 0o700); err != nil {
		return nil, fmt.Errorf("restoring into %s: %w", dir, err)
	}
	idx, err := unpackBackup(ctx, r, stage)
	if err != nil {
		return nil, fmt.Errorf("restoring backup: %w", err)
	}
	st, err := checkRestored(stage, idx, o, now)
	if err != nil {
		return nil, fmt.Errorf("restoring backup: %w", err)
	}
	// dir is absent or empty (checked above): an empty one makes way.
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("restoring into %s: %w", dir, err)
	}
	if err := os.Rename(stage, dir); err != nil {
		return nil, fmt.Errorf("restoring into %s: %w", dir, err)
	}
	ok = true
	st.Dir, st.kv = dir, openFiles(dir)
	return st, nil
}

func checkRestoreTarget(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restoring into %s: %w", dir, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("restoring into %s: the directory is not empty (%s, …); restore only onto a new data dir", dir, ents[0].Name())
	}
	return nil
}

// checkRestored checks the unpacked state as serve would load it, and
// applies the new IPs.
func checkRestored(stage string, idx *backupIndex, o RestoreOptions, now time.Time) (*State, error) {
	if fresh, err := checkComplete(stage); err != nil {
		return nil, err
	} else if fresh {
		return nil, errors.New("the archive holds no device state")
	}
	st, err := Load(stage)
	if err != nil {
		return nil, err
	}
	if got := st.CA.Fingerprint(); got != idx.CAFingerprint {
		return nil, fmt.Errorf("CA fingerprint mismatch: got %s, index says %s", got, idx.CAFingerprint)
	}
	if _, err := st.Identities().Read(); err != nil {
		return nil, err
	}
	// Ensure loads and checks everything (server certificate, identities)
	// and, with new IPs, reissues the server certificate under the CA.
	return Ensure(stage, InitOptions{IPs: o.IPs}, now)
}

// maxIndexSize bounds the index entry read into memory.
const maxIndexSize = 256 << 20

// unpackBackup writes the archive's files under stage and checks them
// against its index.
func unpackBackup(ctx context.Context, r io.Reader, stage string) (*backupIndex, error) {
	br := bufio.NewReader(r)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading gzip: %w", err)
		}
		defer zr.Close()
		in = zr
	}
	tr := tar.NewReader(in)
	got := map[string]string{}
	var idx *backupIndex
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading archive: %w", err)
		}
		if idx != nil {
			return nil, fmt.Errorf("reading archive: entry %q after the index %s", hdr.Name, backupIndexName)
		}
		name, err := archivePath(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch {
		case hdr.Typeflag == tar.TypeDir:
			if err := os.MkdirAll(filepath.Join(stage, filepath.FromSlash(name)), 0o700); err != nil {
				return nil, fmt.Errorf("unpacking %s: %w", name, err)
			}
			continue
		case hdr.Typeflag != tar.TypeReg:
			return nil, fmt.Errorf("reading archive: %s: entry type %q is not a file or directory", name, hdr.Typeflag)
		case name == backupIndexName:
			if hdr.Size > maxIndexSize {
				return nil, fmt.Errorf("reading archive: index of %d bytes", hdr.Size)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("reading archive index: %w", err)
			}
			idx = &backupIndex{}
			if err := json.Unmarshal(b, idx); err != nil {
				return nil, fmt.Errorf("reading archive index: %w", err)
			}
			continue
		}
		sum, err := unpackFile(tr, stage, name, hdr)
		if err != nil {
			return nil, err
		}
		got[name] = sum
	}
	if idx == nil {
		return nil, fmt.Errorf("reading archive: no %s at its end (not an edgecrd backup, or cut short)", backupIndexName)
	}
	if idx.Format != backupFormat {
		return nil, fmt.Errorf("reading archive: format %d, this edgecrd reads %d", idx.Format, backupFormat)
	}
	for name, want := range idx.Files {
		if g, ok := got[name]; !ok {
			return nil, fmt.Errorf("verifying archive: %s is in the index but not in the archive", name)
		} else if g != want {
			return nil, fmt.Errorf("verifying archive: %s: sha256 mismatch: got %s, want %s", name, g, want)
		}
	}
	for name := range got {
		if _, ok := idx.Files[name]; !ok {
			return nil, fmt.Errorf("verifying archive: %s is not in the index", name)
		}
	}
	for name, sum := range got {
		if err := checkBlobDigest(name, sum); err != nil {
			return nil, err
		}
	}
	return idx, nil
}

// archivePath checks an entry name: a clean relative slash path with no
// component that is empty, "..", or starts with a dot (nothing may land
// outside the data dir or on its locks).
func archivePath(name string) (string, error) {
	n := strings.TrimSuffix(name, "/")
	if n == "" || strings.ContainsAny(n, "\\:\x00") || path.IsAbs(n) || path.Clean(n) != n {
		return "", fmt.Errorf("reading archive: unsafe entry name %q", name)
	}
	for c := range strings.SplitSeq(n, "/") {
		if c == "" || strings.HasPrefix(c, ".") {
			return "", fmt.Errorf("reading archive: unsafe entry name %q", name)
		}
	}
	return n, nil
}

func unpackFile(tr io.Reader, stage, name string, hdr *tar.Header) (string, error) {
	p := filepath.Join(stage, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("unpacking %s: %w", name, err)
	}
	mode := fs.FileMode(0o600)
	if hdr.Mode&0o044 != 0 {
		mode = 0o644 // public: ca.crt, server.crt
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return "", fmt.Errorf("unpacking %s: %w", name, err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), tr)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("unpacking %s: %w", name, err)
	}
	// Keep modification times: garbage collection judges age by them.
	if !hdr.ModTime.IsZero() {
		_ = os.Chtimes(p, hdr.ModTime, hdr.ModTime)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkBlobDigest checks that a blob's content hashes to the digest its
// path names (registry/docker/registry/v2/blobs/sha256/ab/abcd…/data).
func checkBlobDigest(name, sum string) error {
	prefix := filepath.ToSlash(registryV2) + "/blobs/sha256/"
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return nil
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[2] != "data" || len(parts[1]) < 2 || parts[0] != parts[1][:2] {
		return nil // not a blob's data file
	}
	if parts[1] != sum {
		return fmt.Errorf("verifying archive: blob sha256:%s: content hashes to sha256:%s", parts[1], sum)
	}
	return nil
}
