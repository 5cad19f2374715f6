package credhelper

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/edgecr/edgecr/internal/fsretry"
)

// maxSymlinks bounds resolveSymlinks, as the kernel bounds path lookup.
const maxSymlinks = 40

// resolveSymlinks follows path while it is a symbolic link and returns the
// file a write must replace, so that a symlinked config.json (dotfile
// managers) keeps its link and gets new content at the target. A dangling
// link resolves to its missing target, which the write then creates.
func resolveSymlinks(path string) (string, error) {
	p := path
	for range maxSymlinks {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return p, nil
		}
		if err != nil {
			return "", fmt.Errorf("resolving %s: %w", path, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return p, nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", fmt.Errorf("resolving %s: %w", path, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	return "", fmt.Errorf("resolving %s: too many levels of symbolic links", path)
}

// readOptional reads path, which must not be a symbolic link (see
// resolveSymlinks); a missing file is (nil, nil, nil).
func readOptional(path string) ([]byte, fs.FileInfo, error) {
	f, err := openNoFollow(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("reading %s: not a regular file", path)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, fi, nil
}

// missingDirs lists dir and those of its parents that do not exist,
// outermost first: what mkdirAllOwned would create.
func missingDirs(dir string) []string {
	var missing []string
	for d := dir; ; {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			break
		}
		missing = append([]string{d}, missing...)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return missing
}

// mkdirAllOwned creates dir and its missing parents with mode 0700, gives
// each directory it creates to owner, and returns them, outermost first.
func mkdirAllOwned(dir string, owner *ownerID) ([]string, error) {
	var missing []string
	for d := dir; ; {
		_, err := os.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("creating directory %s: %w", dir, err)
		}
		missing = append(missing, d)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := os.Mkdir(d, 0o700); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue // made by someone else meanwhile: not ours
			}
			return created, fmt.Errorf("creating directory %s: %w", d, err)
		}
		created = append(created, d)
		if err := lchown(d, owner); err != nil {
			return created, fmt.Errorf("setting owner of %s: %w", d, err)
		}
	}
	return created, nil
}

// writeFileAtomic replaces path with data: a temp file in the same
// directory with mode perm and owner, fsync, an optional last check (which
// may veto the rename), rename over path, fsync of the directory. A crash
// leaves the old file or the new one, never a torn one. path must not be a
// symlink (see resolveSymlinks) and its directory must exist.
func writeFileAtomic(path string, data []byte, perm fs.FileMode, owner *ownerID, check func() error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after a successful rename
	err = f.Chmod(perm)
	if err == nil {
		err = fchown(f, owner)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && check != nil {
		err = check()
	}
	if err == nil {
		err = fsretry.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: not every OS can sync a directory
		d.Close()
	}
	return nil
}
