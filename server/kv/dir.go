package kv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// Dir is a Store in a directory: one file per key, written to a temp file,
// fsynced and renamed into place, so a reader sees the old or the new value,
// never part of one. Writes are serialized by a mutex and an advisory lock
// on a file in the directory, so several processes on one directory are
// safe. Versions are content hashes.
//
// A key maps to a path: each "/"-separated segment is escaped (everything
// but a-z, 0-9, "-" and "_" becomes %xx, so the mapping is the same on
// case-insensitive file systems, and so does the first letter of a name
// Windows reserves, like "con"), directories are segments, and a key's
// file is its last segment plus ".v" (escaped segments have no dot, so a
// key "a" and a key "a/b" do not collide). Names starting with "." are the
// store's own (lock, temp files).
type Dir struct {
	root string
	mu   sync.Mutex
}

// OpenDir opens (creating it 0700 if needed) the store in root.
func OpenDir(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	return &Dir{root: root}, nil
}

const dirValueSuffix = ".v"

// windowsDevice reports whether seg is a name Windows reserves for a
// device in any directory (CON, NUL, COM1, ...), with or without extension.
func windowsDevice(seg string) bool {
	switch {
	case seg == "con" || seg == "prn" || seg == "aux" || seg == "nul":
		return true
	case len(seg) == 4 && (seg[:3] == "com" || seg[:3] == "lpt") && seg[3] >= '0' && seg[3] <= '9':
		return true
	}
	return false
}

func escapeSegment(seg string) string {
	var b strings.Builder
	dev := windowsDevice(seg)
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if (c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') && !(dev && i == 0) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02x", c)
	}
	return b.String()
}

func unescapeSegment(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		v, err := hex.DecodeString(s[i+1 : i+3])
		if err != nil {
			return "", false
		}
		b.WriteByte(v[0])
		i += 2
	}
	// Only the canonical escaping is ours (no "%61" for "a").
	return b.String(), escapeSegment(b.String()) == s
}

func (d *Dir) path(key string) string {
	segs := strings.Split(key, "/")
	parts := make([]string, 0, len(segs)+1)
	parts = append(parts, d.root)
	for _, s := range segs {
		parts = append(parts, escapeSegment(s))
	}
	parts[len(parts)-1] += dirValueSuffix
	return filepath.Join(parts...)
}

func contentVersion(val []byte) Version {
	sum := sha256.Sum256(val)
	return Version(hex.EncodeToString(sum[:16]))
}

func (d *Dir) read(key string) ([]byte, Version, error) {
	b, err := os.ReadFile(d.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("reading %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading %q: %w", key, err)
	}
	return b, contentVersion(b), nil
}

// Get implements Store.
func (d *Dir) Get(ctx context.Context, key string) ([]byte, Version, error) {
	if err := ValidKey(key); err != nil {
		return nil, "", err
	}
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("reading %q: %w", key, err)
	}
	return d.read(key)
}

// GetIfChanged implements Store. A directory has no cheaper check than
// reading the file, so it reads and hashes it.
func (d *Dir) GetIfChanged(ctx context.Context, key string, ver Version) ([]byte, Version, bool, error) {
	val, v, err := d.Get(ctx, key)
	if err != nil {
		return nil, "", false, err
	}
	if v == ver {
		return nil, v, false, nil
	}
	return val, v, true, nil
}

// lock serializes writers in this process and across processes.
func (d *Dir) lock(ctx context.Context) (func(), error) {
	return lockDir(ctx, &d.mu, d.root, ".lock")
}

// lockDir takes mu, then the file lock name in root (made if missing): a
// store's writers, one at a time in this process and across processes.
func lockDir(ctx context.Context, mu *sync.Mutex, root, name string) (func(), error) {
	mu.Lock()
	if err := ctx.Err(); err != nil {
		mu.Unlock()
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		mu.Unlock()
		return nil, err
	}
	unlock, err := LockFile(filepath.Join(root, name))
	if err != nil {
		mu.Unlock()
		return nil, err
	}
	return func() { unlock(); mu.Unlock() }, nil
}

// current is the version of key now ("" when it does not exist).
func (d *Dir) current(key string) (Version, error) {
	_, v, err := d.read(key)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return v, err
}

// Put implements Store.
func (d *Dir) Put(ctx context.Context, key string, val []byte, ifVer Version) (Version, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	unlock, err := d.lock(ctx)
	if err != nil {
		return "", fmt.Errorf("writing %q: %w", key, err)
	}
	defer unlock()
	cur, err := d.current(key)
	if err != nil {
		return "", err
	}
	if cur != ifVer {
		return "", conflict("writing", key, cur, ifVer)
	}
	p := d.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("writing %q: %w", key, err)
	}
	if err := writeAtomic(p, val); err != nil {
		return "", fmt.Errorf("writing %q: %w", key, err)
	}
	return contentVersion(val), nil
}

// conflict names both sides of a lost compare-and-swap.
func conflict(doing, key string, cur, want Version) error {
	have := string(cur)
	if have == "" {
		have = "none (absent)"
	}
	if want == "" {
		return fmt.Errorf("%s %q create-only: it exists at version %s: %w", doing, key, have, ErrConflict)
	}
	return fmt.Errorf("%s %q: version is %s, want %s: %w", doing, key, have, want, ErrConflict)
}

func writeAtomic(p string, val []byte) error {
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(val); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	ok = true
	return syncDir(filepath.Dir(p))
}

// syncDir makes a rename in dir durable (not possible, nor needed, on Windows).
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Delete implements Store.
func (d *Dir) Delete(ctx context.Context, key string, ifVer Version) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	unlock, err := d.lock(ctx)
	if err != nil {
		return fmt.Errorf("deleting %q: %w", key, err)
	}
	defer unlock()
	if ifVer != "" {
		cur, err := d.current(key)
		if err != nil {
			return err
		}
		if cur != ifVer {
			return conflict("deleting", key, cur, ifVer)
		}
	}
	p := d.path(key)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting %q: %w", key, err)
	}
	return removeEmptyParents(d.root, p)
}

// removeEmptyParents removes the directories between root and the removed
// file p that it leaves empty, never root, and syncs the last one kept.
// Callers hold the store's lock, so no writer is about to create a file in
// them.
func removeEmptyParents(root, p string) error {
	dir := filepath.Dir(p)
	for dir != root && len(dir) > len(root) && os.Remove(dir) == nil {
		dir = filepath.Dir(dir)
	}
	return syncDir(dir)
}

// checkList checks List's arguments and that ctx is still live.
func checkList(ctx context.Context, prefix, after string, limit int) error {
	if err := validPrefix(prefix); err != nil {
		return err
	}
	if err := checkLimit(limit); err != nil {
		return err
	}
	if err := validPrefix(after); err != nil {
		return fmt.Errorf("invalid list start %q", after)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("listing %q: %w", prefix, err)
	}
	return nil
}

// List implements Store. It reads the directories under prefix's complete
// segments and sorts: O(keys under them) per page.
func (d *Dir) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := checkList(ctx, prefix, after, limit); err != nil {
		return nil, err
	}
	base, keyBase := d.root, ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		for _, s := range strings.Split(prefix[:i], "/") {
			base = filepath.Join(base, escapeSegment(s))
		}
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
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		segs := strings.Split(filepath.ToSlash(rel), "/")
		if !e.IsDir() {
			if !strings.HasSuffix(name, dirValueSuffix) {
				return nil
			}
			segs[len(segs)-1] = strings.TrimSuffix(segs[len(segs)-1], dirValueSuffix)
		}
		for i, s := range segs {
			u, ok := unescapeSegment(s)
			if !ok {
				return nil // not ours
			}
			segs[i] = u
		}
		key := keyBase + strings.Join(segs, "/")
		if e.IsDir() {
			// Prune directories that cannot hold a key with this prefix.
			if !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(key, prefix) && key > after {
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

var _ Store = (*Dir)(nil)
