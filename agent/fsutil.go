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
	return writeFileAtomicWith(path, data, mode, nil)
}

// writeFileAtomicWith is writeFileAtomic that runs prepare on the
// temporary file's path before anything is written into it (the Windows ACL
// of a file that holds secrets).
func writeFileAtomicWith(path string, data []byte, mode fs.FileMode, prepare func(string) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if prepare != nil {
		if err = prepare(tmp.Name()); err != nil {
			return err
		}
	}
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
