package trust

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgecr/edgecr/internal/fsretry"
)

// isLiveRoot reports whether root is the running system's own root.
func isLiveRoot(root string) bool {
	return root == "" || root == "/" || root == string(filepath.Separator)
}

// rooted maps a path as the target machine sees it (sysPath) to the path to
// open from this process, which sees the target under root.
func rooted(root, sysPath string) string {
	if isLiveRoot(root) {
		return filepath.FromSlash(sysPath)
	}
	// Clean as an absolute path first, so that ".." cannot climb out of root.
	p := filepath.Clean(string(filepath.Separator) + filepath.FromSlash(strings.TrimPrefix(sysPath, filepath.VolumeName(sysPath))))
	return filepath.Join(root, p)
}

// readIfExists returns the file's content, or ok=false when it does not exist.
func readIfExists(path string) (data []byte, ok bool, err error) {
	data, err = os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, true, nil
}

// sameContent reports whether path holds exactly data.
func sameContent(path string, data []byte) (bool, error) {
	cur, ok, err := readIfExists(path)
	if err != nil || !ok {
		return false, err
	}
	return bytes.Equal(cur, data), nil
}

// refuseSymlink returns an error if path is a symbolic link: renaming over it
// would replace the link (and whatever set it up) with a plain file, and
// following it could leave the root.
func refuseSymlink(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil //nolint:nilerr // absent is fine; the write reports real errors.
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("writing %s: refusing to replace a symbolic link", path)
	}
	return nil
}

// writeFileAtomic replaces path with data: temp file in the same directory,
// fsync, rename, fsync of the directory. An existing file keeps its mode and
// owner; a new file gets perm and the owner of its directory.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	if err := refuseSymlink(path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	ref, statErr := os.Stat(path)
	if statErr == nil {
		perm = ref.Mode().Perm()
	} else if ref, statErr = os.Stat(dir); statErr != nil {
		return fmt.Errorf("writing %s: %w", path, statErr)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".edgecr-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("setting mode of %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err = chownLike(tmp, ref); err != nil {
		return fmt.Errorf("setting owner of %s: %w", tmp, err)
	}
	if err = fsretry.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// removeFile deletes path and syncs its directory; a missing file is not an
// error. It reports whether something was removed.
func removeFile(path string) (bool, error) {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("removing %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return true, fmt.Errorf("syncing %s: %w", filepath.Dir(path), err)
	}
	return true, nil
}

// mkdirAll creates dir and its missing parents with perm, each taking the
// owner of its parent, and returns the directories it created, parents first.
func mkdirAll(dir string, perm fs.FileMode) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return nil, fmt.Errorf("creating %s: %s is not a directory", dir, d)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := os.Mkdir(d, perm); err != nil {
			return created, fmt.Errorf("creating %s: %w", d, err)
		}
		created = append(created, d)
		// Mkdir applies the umask; certificate directories are public.
		if err := os.Chmod(d, perm); err != nil {
			return created, fmt.Errorf("setting mode of %s: %w", d, err)
		}
		parent, err := os.Stat(filepath.Dir(d))
		if err != nil {
			return created, fmt.Errorf("creating %s: %w", d, err)
		}
		if err := chownLike(d, parent); err != nil {
			return created, fmt.Errorf("setting owner of %s: %w", d, err)
		}
	}
	return created, nil
}

// removeEmptyDir removes dir if it is empty. It reports whether dir is gone
// (removed now or already absent).
func removeEmptyDir(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return false, nil
	}
	if err := os.Remove(dir); err != nil {
		return false, fmt.Errorf("removing %s: %w", dir, err)
	}
	return true, nil
}
