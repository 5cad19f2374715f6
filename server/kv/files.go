package kv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// Files is a Store whose keys are the file names themselves: the key
// "identities.json" is the file identities.json in the directory, "a/b" is
// the file b in the subdirectory a. It is the layout of edgecrd's data dir,
// so a data dir written before the store existed loads unchanged. Keys are
// therefore restricted to plain names (FileKey); a key cannot be both a
// value and the parent of another key (a file and a directory of one name).
//
// Writes go to a temp file, are fsynced and renamed into place, and are
// serialized by a mutex and an advisory lock on FilesLock, so serve and
// admin commands on one data dir are safe. Versions are content hashes, as
// Dir's. GetIfChanged costs one stat while a file is unchanged.
type Files struct {
	root     string
	reserved []string
	mode     func(key string) fs.FileMode

	mu sync.Mutex // writers of this process (the file lock is per process)

	statMu sync.Mutex
	stats  map[string]fileStamp // GetIfChanged: the file a version was read from
}

type fileStamp struct {
	path string
	info fs.FileInfo
	ver  Version
}

// FilesLock is the lock file writers of a Files store take, in its root.
const FilesLock = ".state.lock"

// FilesOption configures OpenFiles.
type FilesOption func(*Files)

// Reserved refuses keys whose first segment is one of names: directories
// and files of the data dir that are not the store's (distribution's
// storage, for one).
func Reserved(names ...string) FilesOption {
	return func(f *Files) { f.reserved = append(f.reserved, names...) }
}

// Mode sets the permissions of the file of each key (0600 without it).
// Only a new file takes them: a file replaced keeps the mode the function
// gives again.
func Mode(mode func(key string) fs.FileMode) FilesOption {
	return func(f *Files) { f.mode = mode }
}

// OpenFiles returns the store in root. It touches nothing: reads of a
// root that does not exist find no keys, and the first write creates it
// (0700).
func OpenFiles(root string, opts ...FilesOption) *Files {
	f := &Files{root: root, mode: func(string) fs.FileMode { return 0o600 }, stats: map[string]fileStamp{}}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Root is the directory of the store.
func (f *Files) Root() string { return f.root }

// FileKey reports whether key can name a file of a Files store: a valid
// key (ValidKey) whose segments are made of ASCII letters, digits, ".",
// "-" and "_", start with a letter, digit or "_" (names starting with "."
// are the store's own: lock and temp files) and are not a name Windows
// reserves for a device (con, nul, com1, ... with or without extension).
func FileKey(key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	for _, seg := range strings.Split(key, "/") {
		c := seg[0]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("invalid file key %q: segment %q must start with a letter, digit or _", key, seg)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return fmt.Errorf("invalid file key %q: character %q (a file key has letters, digits, '.', '-' and '_')", key, c)
			}
		}
		base, _, _ := strings.Cut(strings.ToLower(seg), ".")
		if windowsDevice(base) {
			return fmt.Errorf("invalid file key %q: %q is a device name on Windows", key, seg)
		}
	}
	return nil
}

func (f *Files) check(key string) error {
	if err := FileKey(key); err != nil {
		return err
	}
	first, _, _ := strings.Cut(key, "/")
	for _, r := range f.reserved {
		if first == r {
			return fmt.Errorf("invalid file key %q: %q is not the state store's", key, r)
		}
	}
	return nil
}

func (f *Files) path(key string) string { return filepath.Join(f.root, filepath.FromSlash(key)) }

func (f *Files) read(key string) ([]byte, Version, error) {
	b, err := os.ReadFile(f.path(key))
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return nil, "", fmt.Errorf("reading %s: %w", f.path(key), ErrNotFound)
	case err != nil && isDirErr(f.path(key)):
		return nil, "", fmt.Errorf("reading %s: %w", f.path(key), ErrNotFound)
	case err != nil:
		return nil, "", fmt.Errorf("reading %s: %w", f.path(key), err)
	}
	return b, contentVersion(b), nil
}

// isDirErr: reading a directory fails; for the store it is no value.
func isDirErr(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// Get implements Store.
func (f *Files) Get(ctx context.Context, key string) ([]byte, Version, error) {
	if err := f.check(key); err != nil {
		return nil, "", err
	}
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("reading %q: %w", key, err)
	}
	return f.read(key)
}

// GetIfChanged implements Store: one stat when the file is the one the
// version was last read from (same file, size and modification time),
// else a read.
func (f *Files) GetIfChanged(ctx context.Context, key string, ver Version) ([]byte, Version, bool, error) {
	// A key read before was checked then: the per-request path of the
	// authenticator does a map lookup and a stat, nothing more.
	f.statMu.Lock()
	st, seen := f.stats[key]
	f.statMu.Unlock()
	p := st.path
	if !seen {
		if err := f.check(key); err != nil {
			return nil, "", false, err
		}
		p = f.path(key)
	}
	if err := ctx.Err(); err != nil {
		return nil, "", false, fmt.Errorf("reading %q: %w", key, err)
	}
	info, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || err == nil && info.IsDir() {
		return nil, "", false, fmt.Errorf("reading %s: %w", p, ErrNotFound)
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("reading %s: %w", p, err)
	}
	if seen && st.ver == ver && sameFile(st.info, info) {
		return nil, ver, false, nil
	}
	// The stat was taken before the read: if a writer replaces the file in
	// between, the next call sees another file and reads again.
	val, v, err := f.read(key)
	if err != nil {
		return nil, "", false, err
	}
	f.statMu.Lock()
	f.stats[key] = fileStamp{path: p, info: info, ver: v}
	f.statMu.Unlock()
	if v == ver {
		return nil, v, false, nil
	}
	return val, v, true, nil
}

func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func (f *Files) lock(ctx context.Context) (func(), error) {
	return lockDir(ctx, &f.mu, f.root, FilesLock)
}

func (f *Files) current(key string) (Version, error) {
	_, v, err := f.read(key)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return v, err
}

// Put implements Store.
func (f *Files) Put(ctx context.Context, key string, val []byte, ifVer Version) (Version, error) {
	if err := f.check(key); err != nil {
		return "", err
	}
	unlock, err := f.lock(ctx)
	if err != nil {
		return "", fmt.Errorf("writing %q: %w", key, err)
	}
	defer unlock()
	cur, err := f.current(key)
	if err != nil {
		return "", err
	}
	if cur != ifVer {
		return "", conflict("writing", key, cur, ifVer)
	}
	p := f.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("writing %s: %w", p, err)
	}
	if err := writeFileMode(p, val, f.mode(key)); err != nil {
		return "", fmt.Errorf("writing %s: %w", p, err)
	}
	return contentVersion(val), nil
}

// writeFileMode is writeAtomic with the file's permissions set before the
// rename, and the temp file named after the target (.NAME.tmp-*), as
// edgecrd wrote data dir files before this store.
func writeFileMode(p string, val []byte, mode fs.FileMode) error {
	t, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := t.Name()
	ok := false
	defer func() {
		if !ok {
			t.Close()
			os.Remove(tmp)
		}
	}()
	if err := t.Chmod(mode); err != nil {
		return err
	}
	if _, err := t.Write(val); err != nil {
		return err
	}
	if err := t.Sync(); err != nil {
		return err
	}
	if err := t.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	ok = true
	return syncDir(filepath.Dir(p))
}

// Delete implements Store.
func (f *Files) Delete(ctx context.Context, key string, ifVer Version) error {
	if err := f.check(key); err != nil {
		return err
	}
	unlock, err := f.lock(ctx)
	if err != nil {
		return fmt.Errorf("deleting %q: %w", key, err)
	}
	defer unlock()
	p := f.path(key)
	if ifVer != "" {
		cur, err := f.current(key)
		if err != nil {
			return err
		}
		if cur != ifVer {
			return conflict("deleting", key, cur, ifVer)
		}
	} else if isDirErr(p) {
		return nil // not a value: nothing to delete
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting %s: %w", p, err)
	}
	return removeEmptyParents(f.root, p)
}

// List implements Store. Files and directories that are not keys (names
// starting with ".", reserved names, other characters) are skipped.
func (f *Files) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := checkList(ctx, prefix, after, limit); err != nil {
		return nil, err
	}
	base, keyBase := f.root, ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		base = filepath.Join(f.root, filepath.FromSlash(prefix[:i]))
		keyBase = prefix[:i+1]
	}
	var keys []string
	err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // no such prefix, or removed while we walk
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == base {
			return nil
		}
		rel, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		key := keyBase + filepath.ToSlash(rel)
		if f.check(key) != nil {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			if !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if e.Type().IsRegular() && strings.HasPrefix(key, prefix) && key > after {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %q: %w", prefix, err)
	}
	sort.Strings(keys)
	if len(keys) > limit {
		keys = keys[:limit]
	}
	return keys, nil
}

var _ Store = (*Files)(nil)
