package hostsfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// write replaces the content of the file at path, which holds old and is
// described by info (nil when there is no file yet). See File.Add for why
// it may fall back to writing in place.
func (f *File) write(path string, content, old []byte, info fs.FileInfo) error {
	err := writeAtomic(path, content, info, f.rename)
	if err == nil || info == nil || !inPlaceHelps(err) {
		return err
	}
	f.logger.Info("hosts file cannot be replaced; rewriting it in place", "path", path, "reason", err)
	if ierr := writeInPlace(path, content, old); ierr != nil {
		return fmt.Errorf("%w (tried because: %v)", ierr, err)
	}
	return nil
}

// writeAtomic writes content to a temporary file next to path and renames
// it over path. The temporary file gets the mode, owner and SELinux label of
// the file info describes, or mode 0644 when info is nil.
func writeAtomic(path string, content []byte, info fs.FileInfo, rename func(string, string) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".edgecr-*")
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(content); err != nil {
		return fmt.Errorf("writing temporary file: %w", err)
	}
	mode := fs.FileMode(0o644)
	if info != nil {
		mode = info.Mode().Perm()
		if err := keepOwner(tmp, info); err != nil {
			return fmt.Errorf("giving temporary file the owner of %s: %w", path, err)
		}
		if err := keepLabel(path, tmp); err != nil {
			return fmt.Errorf("giving temporary file the SELinux label of %s: %w", path, err)
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("setting mode of temporary file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing temporary file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing temporary file: %w", err)
	}
	if err := rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing hosts file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// writeInPlace overwrites the file at path, which holds old, with content.
// It writes first and truncates after, rather than the other way round, so
// that a reader never sees an empty file (which would lose localhost too).
// If the write fails (a full disk), it puts old back as well as it can.
func writeInPlace(path string, content, old []byte) error {
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("writing hosts file in place: %w", err)
	}
	defer w.Close()
	if err := overwrite(w, content); err != nil {
		if rerr := overwrite(w, old); rerr != nil {
			return fmt.Errorf("writing hosts file in place: %w; restoring its old content: %v", err, rerr)
		}
		return fmt.Errorf("writing hosts file in place (old content restored): %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("writing hosts file in place: %w", err)
	}
	return nil
}

// overwrite makes b the whole content of w and syncs it.
func overwrite(w *os.File, b []byte) error {
	if _, err := w.WriteAt(b, 0); err != nil {
		return err
	}
	if err := w.Truncate(int64(len(b))); err != nil {
		return err
	}
	return w.Sync()
}
