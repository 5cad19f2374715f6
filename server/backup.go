package server

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// A backup is a tar (optionally gzip-compressed) of the data dir: the state
// files at the top (device.json, CA, server certificate, identities and
// tokens, admin.password, …: every regular file whose name does not start
// with a dot, so not the locks), the registry storage under registry/, and
// last backupIndex, which lists every file with its SHA-256.
//
// Consistency while serve runs, without stopping it: a push writes a blob
// before the link that names it (layer data, then the layer link; manifest
// data, then its revision link; then the tag). The backup reads in the
// opposite order: every tag first, then every revision link, then every
// layer link, then the blobs. Whatever a link read earlier names was
// therefore on disk before the later pass started, and blobs are only ever
// removed by garbage collection, which the backup holds off (it takes the
// collection lock, so it waits for a collection that runs). What a push
// adds during the backup is either wholly in it or only as unreferenced
// blobs. A manifest deleted between the tag pass and the revision pass
// would leave a tag without its manifest: such tags are left out and
// reported.
const backupIndexName = "edgecr-backup.json"

const backupFormat = 1

// backupIndex is the archive's last entry.
type backupIndex struct {
	Format        int               `json:"format"`
	Created       time.Time         `json:"created"`
	Host          string            `json:"host"`
	CAFingerprint string            `json:"caFingerprint"`
	Files         map[string]string `json:"files"` // slash path → hex SHA-256
}

// BackupReport is what a backup wrote.
type BackupReport struct {
	Host          string
	CAFingerprint string
	Files         int
	Bytes         int64    // file content, before compression
	Tags          int      // tags in the archive
	Dropped       []string // repo:tag left out: their manifest was deleted during the backup
}

// backupHook lets tests act between the passes ("tags", "links").
var backupHook func(stage string)

// registryV2 is distribution's layout root inside the data dir.
var registryV2 = filepath.Join(storageDir, filepath.FromSlash(strings.TrimPrefix(v2Root, "/")))

// Backup writes the data dir's state and registry to w as a tar, gzipped
// when compress is true. It may run while serve runs (see backupIndexName).
func (s *State) Backup(ctx context.Context, w io.Writer, compress bool, now time.Time) (*BackupReport, error) {
	if _, err := checkComplete(s.Dir); err != nil {
		return nil, err
	}
	unlock, err := lockFile(s.Path(gcLock))
	if err != nil {
		return nil, err
	}
	defer unlock()

	rep := &BackupReport{Host: s.Device.Host, CAFingerprint: s.CA.Fingerprint()}
	idx := backupIndex{Format: backupFormat, Created: now.UTC(), Host: rep.Host, CAFingerprint: rep.CAFingerprint, Files: map[string]string{}}
	out := w
	var zw *gzip.Writer
	if compress {
		zw = gzip.NewWriter(w)
		out = zw
	}
	tw := tar.NewWriter(out)
	b := &backupWriter{ctx: ctx, dir: s.Dir, tw: tw, idx: &idx, rep: rep, dirs: map[string]bool{}}

	// The registry's links in dependency order, then its blobs (streamed),
	// then the state files.
	links, err := b.readLinks()
	if err != nil {
		return nil, err
	}
	if err := b.addMemory(links); err != nil {
		return nil, err
	}
	if err := b.addTree(storageDir, func(rel string) bool {
		return rel == filepath.Join(registryV2, "repositories") || rel == filepath.Join(registryV2, filepath.Base(trashRoot))
	}); err != nil {
		return nil, err
	}
	if err := b.addStateFiles(); err != nil {
		return nil, err
	}
	ib, _ := json.MarshalIndent(idx, "", "  ")
	if err := tw.WriteHeader(&tar.Header{Name: backupIndexName, Mode: 0o600, Size: int64(len(ib)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
		return nil, fmt.Errorf("writing backup: %w", err)
	}
	if _, err := tw.Write(ib); err != nil {
		return nil, fmt.Errorf("writing backup: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing backup: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("writing backup: %w", err)
		}
	}
	return rep, nil
}

type backupWriter struct {
	ctx  context.Context
	dir  string
	tw   *tar.Writer
	idx  *backupIndex
	rep  *BackupReport
	dirs map[string]bool
}

// memFile is a small file read into memory during the link passes.
type memFile struct {
	rel  string // slash path in the archive
	data []byte
	mod  time.Time
	mode fs.FileMode
}

// skipRegistryFile tells files of the storage that are not content: upload
// sessions and distribution's temporary files (PutContent writes
// link.<uuid>.tmp and renames it).
func skipRegistryFile(rel string) bool {
	return strings.HasSuffix(rel, ".tmp") || strings.Contains("/"+rel+"/", "/_uploads/")
}

// readLinks reads every tag, then every revision link, then every layer
// link (and anything else) of the repositories, and leaves out tags whose
// revision is gone.
func (b *backupWriter) readLinks() ([]memFile, error) {
	root := filepath.Join(registryV2, "repositories")
	if _, err := os.Stat(filepath.Join(b.dir, root)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	kind := func(rel string) int {
		switch {
		case strings.Contains(rel, "/_manifests/tags/"):
			return 0
		case strings.Contains(rel, "/_manifests/revisions/"):
			return 1
		case strings.Contains(rel, "/_layers/"):
			return 2
		}
		return 3
	}
	var files []memFile
	for pass := range 4 {
		err := filepath.WalkDir(filepath.Join(b.dir, root), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed while we walk (an upload finishing)
				}
				return err
			}
			if err := b.ctx.Err(); err != nil {
				return err
			}
			rel := b.rel(p)
			if e.IsDir() || skipRegistryFile(rel) || kind(rel) != pass {
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !fi.Mode().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			files = append(files, memFile{rel: rel, data: data, mod: fi.ModTime(), mode: fi.Mode().Perm()})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("backing up %s: %w", filepath.Join(b.dir, root), err)
		}
		if backupHook != nil && pass == 0 {
			backupHook("tags")
		}
	}
	if backupHook != nil {
		backupHook("links")
	}
	return b.dropDangling(files), nil
}

// dropDangling leaves out tag files whose manifest revision is not in files
// (deleted between the passes), and counts the tags kept.
func (b *backupWriter) dropDangling(files []memFile) []memFile {
	have := map[string]bool{}
	for _, f := range files {
		have[f.rel] = true
	}
	// .../repositories/<repo>/_manifests/tags/<tag>/current/link
	// .../repositories/<repo>/_manifests/tags/<tag>/index/<alg>/<hex>/link
	revLink := func(repoDir, dgst string) string {
		alg, hex, ok := strings.Cut(strings.TrimSpace(dgst), ":")
		if !ok || alg == "" || hex == "" || strings.ContainsAny(alg+hex, "/\\.") {
			return ""
		}
		return repoDir + "/_manifests/revisions/" + alg + "/" + hex + "/link"
	}
	gone := map[string]bool{} // tag dirs to leave out
	for _, f := range files {
		repoDir, rest, ok := strings.Cut(f.rel, "/_manifests/tags/")
		if !ok {
			continue
		}
		tag, tail, _ := strings.Cut(rest, "/")
		if tail == "current/link" {
			if !have[revLink(repoDir, string(f.data))] {
				gone[repoDir+"/_manifests/tags/"+tag+"/"] = true
				repo := strings.TrimPrefix(repoDir, filepath.ToSlash(filepath.Join(registryV2, "repositories"))+"/")
				b.rep.Dropped = append(b.rep.Dropped, repo+":"+tag)
			} else {
				b.rep.Tags++
			}
		}
	}
	out := files[:0]
	for _, f := range files {
		if repoDir, rest, ok := strings.Cut(f.rel, "/_manifests/tags/"); ok {
			tag, tail, _ := strings.Cut(rest, "/")
			if gone[repoDir+"/_manifests/tags/"+tag+"/"] {
				continue
			}
			if strings.HasPrefix(tail, "index/") && !have[revLink(repoDir, string(f.data))] {
				continue // history entry of a deleted manifest
			}
		}
		out = append(out, f)
	}
	sort.Strings(b.rep.Dropped)
	return out
}

func (b *backupWriter) rel(p string) string {
	r, _ := filepath.Rel(b.dir, p)
	return filepath.ToSlash(r)
}

// parents writes the directory entries of rel that are not written yet.
func (b *backupWriter) parents(rel string) error {
	d := path.Dir(rel)
	if d == "." || b.dirs[d] {
		return nil
	}
	if err := b.parents(d); err != nil {
		return err
	}
	b.dirs[d] = true
	return b.tw.WriteHeader(&tar.Header{Name: d + "/", Mode: 0o700, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)})
}

func (b *backupWriter) addMemory(files []memFile) error {
	for _, f := range files {
		if err := b.add(f.rel, f.mode, f.mod, int64(len(f.data)), bytes.NewReader(f.data)); err != nil {
			return err
		}
	}
	return nil
}

// add writes one file entry and records its hash.
func (b *backupWriter) add(rel string, mode fs.FileMode, mod time.Time, size int64, r io.Reader) error {
	if err := b.parents(rel); err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	hdr := &tar.Header{Name: rel, Mode: int64(mode.Perm()), Size: size, ModTime: mod, Typeflag: tar.TypeReg}
	if err := b.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(b.tw, io.TeeReader(r, h))
	if err != nil {
		return fmt.Errorf("backing up %s: %w", rel, err)
	}
	if n != size {
		return fmt.Errorf("backing up %s: read %d bytes, want %d (file changed while read)", rel, n, size)
	}
	b.idx.Files[rel] = hex.EncodeToString(h.Sum(nil))
	b.rep.Files++
	b.rep.Bytes += size
	return nil
}

// addTree streams the files under top (blobs and whatever else the storage
// holds), skipping the subtrees skip names.
func (b *backupWriter) addTree(top string, skip func(rel string) bool) error {
	root := filepath.Join(b.dir, top)
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := b.ctx.Err(); err != nil {
			return err
		}
		r, _ := filepath.Rel(b.dir, p)
		if e.IsDir() {
			if skip(r) {
				return filepath.SkipDir
			}
			return nil
		}
		rel := filepath.ToSlash(r)
		if skipRegistryFile(rel) || !e.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		return b.add(rel, fi.Mode(), fi.ModTime(), fi.Size(), f)
	})
	if err != nil {
		return fmt.Errorf("backing up %s: %w", root, err)
	}
	return nil
}

// addStateFiles adds the regular files at the top of the data dir whose
// names do not start with a dot (locks, markers and temporary files do).
func (b *backupWriter) addStateFiles() error {
	ents, err := os.ReadDir(b.dir)
	if err != nil {
		return fmt.Errorf("backing up %s: %w", b.dir, err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		// Read whole: state files are small and replaced by rename, so
		// one read sees one version.
		data, err := os.ReadFile(filepath.Join(b.dir, e.Name()))
		if err != nil {
			return fmt.Errorf("backing up %s: %w", e.Name(), err)
		}
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("backing up %s: %w", e.Name(), err)
		}
		if err := b.add(e.Name(), fi.Mode(), fi.ModTime(), int64(len(data)), bytes.NewReader(data)); err != nil {
			return err
		}
	}
	// The identity shards and tokens (identitystore.go) live one level
	// down; the same rule (no dot names) leaves out temporary files.
	for _, sub := range []string{strings.TrimSuffix(shardDir, "/"), strings.TrimSuffix(tokenDir, "/")} {
		ents, err := os.ReadDir(filepath.Join(b.dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("backing up %s: %w", sub, err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
				continue
			}
			rel := sub + "/" + e.Name()
			data, err := os.ReadFile(filepath.Join(b.dir, sub, e.Name()))
			if errors.Is(err, fs.ErrNotExist) {
				continue // a token removed while we list
			}
			if err != nil {
				return fmt.Errorf("backing up %s: %w", rel, err)
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("backing up %s: %w", rel, err)
			}
			if err := b.add(rel, fi.Mode(), fi.ModTime(), int64(len(data)), bytes.NewReader(data)); err != nil {
				return err
			}
		}
	}
	return nil
}
