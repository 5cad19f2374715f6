package agent

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/edgecr/edgecr/internal/fsretry"
)

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, synced, given mode, renamed over path; the directory is synced
// too, so the rename survives a crash.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	return writeFileAtomicWith(path, data, mode, os.CreateTemp)
}

// writeFileAtomicWith is writeFileAtomic whose temporary file comes from
// create (os.CreateTemp's signature): createSecretTemp makes a file that is
// born with the protection of a file holding secrets, so that nobody can
// open it between its creation and its first byte.
func writeFileAtomicWith(path string, data []byte, mode fs.FileMode, create func(dir, pattern string) (*os.File, error)) (err error) {
	dir := filepath.Dir(path)
	tmp, err := create(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(mode); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = fsretry.Rename(tmp.Name(), path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir fsyncs a directory where the OS allows it.
func syncDir(dir string) {
	if runtime.GOOS == "windows" {
		return
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// mkdirAllRecord is os.MkdirAll that returns the directories it created,
// outermost first.
func mkdirAllRecord(dir string, mode fs.FileMode) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return made, err
		}
		made = append(made, missing[i])
	}
	return made, nil
}

// exists reports whether path exists (following links).
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// missingDirs lists dir and those of its parents that do not exist,
// outermost first: what MkdirAll would create.
func missingDirs(dir string) []string {
	var missing []string
	for d := filepath.Clean(dir); !exists(d); d = filepath.Dir(d) {
		missing = append([]string{d}, missing...)
		if filepath.Dir(d) == d {
			break
		}
	}
	return missing
}
