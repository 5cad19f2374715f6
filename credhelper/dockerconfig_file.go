package credhelper

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// errConfigChanged is returned when config.json kept changing under us
// (docker login writing it at the same moment) for maxConfigAttempts reads.
var errConfigChanged = errors.New("changed by another program while being updated; try again")

const maxConfigAttempts = 3

// RegisterFile applies Register to the Docker config at path (see
// DockerConfigDir and DockerConfigFileName) and returns the Change to keep
// for UnregisterFile. A symlink at path is followed: the link stays, its
// target gets the new content. The file keeps its mode and owner; a new
// file is created 0600, and it and any directory created for it are owned
// by WithOwner's owner. A malformed file is never written. The write is
// atomic and skipped when nothing changes. Of the options, WithOwner
// (which confines path to the user's home) and WithIntent apply.
func RegisterFile(path, hostPort, helper, defaultStore string, opts ...Option) (Change, error) {
	o := newOptions(opts)
	var ch Change
	var before func(dirs []string) error
	if o.intent != nil {
		before = func(dirs []string) error {
			planned := ch
			planned.CreatedDirs = dirs
			return o.intent(planned)
		}
	}
	created, err := rewriteConfig(path, o, func(old []byte, existed bool) ([]byte, bool, error) {
		out, c, err := Register(old, hostPort, helper, defaultStore)
		c.Existed = existed
		ch = c
		return out, false, err
	}, before)
	if err != nil {
		return Change{}, fmt.Errorf("registering credential helper in %s: %w", path, err)
	}
	ch.CreatedDirs = created
	return ch, nil
}

// UnregisterFile applies Unregister to the Docker config at path and
// reports whether it changed anything. When config.json did not exist
// before RegisterFile and is still as RegisterFile left it, it is removed,
// with the directories RegisterFile created for it if they are empty. A
// missing file is left missing. Of the options, only WithOwner applies: it
// confines path to the user's home as for RegisterFile.
func UnregisterFile(path string, ch Change, opts ...Option) (bool, error) {
	changed := false
	_, err := rewriteConfig(path, newOptions(opts), func(old []byte, existed bool) ([]byte, bool, error) {
		if !existed {
			return nil, false, nil
		}
		out, err := Unregister(old, ch)
		if err != nil {
			return nil, false, err
		}
		changed = !bytes.Equal(out, old)
		return out, !ch.Existed && len(out) == 0, nil
	}, nil)
	if err != nil {
		return false, fmt.Errorf("unregistering credential helper from %s: %w", path, err)
	}
	if changed && !ch.Existed {
		for i := len(ch.CreatedDirs) - 1; i >= 0; i-- {
			_ = os.Remove(ch.CreatedDirs[i]) // fails, as it should, unless empty
		}
	}
	return changed, nil
}

// AppliedFile is Applied for the Docker config at path; a missing file
// shows nothing. Of the options, only WithOwner applies.
func AppliedFile(path string, ch Change, opts ...Option) (bool, error) {
	target, err := newOptions(opts).resolve(path)
	if err != nil {
		return false, err
	}
	data, fi, err := readOptional(target)
	if err != nil || fi == nil {
		return false, err
	}
	return Applied(data, ch), nil
}

// rewriteConfig runs edit on the content of the file at path (resolving
// symlinks) and replaces it with the result, or removes it when edit says
// so, unless edit changed nothing. before, if not nil, runs ahead of any
// write with the directories the write is about to create (with those an
// earlier attempt created). Just before the rename it checks that
// the file still holds what edit was given and starts over if not: the
// Docker CLI takes no lock that we could share, and a lock file of our own
// would be litter in the user's ~/.docker.
func rewriteConfig(path string, o options, edit func(old []byte, existed bool) (out []byte, remove bool, err error), before func(dirs []string) error) ([]string, error) {
	target, err := o.resolve(path)
	if err != nil {
		return nil, err
	}
	owner := o.owner
	var created []string
	for attempt := 1; ; attempt++ {
		old, fi, err := readOptional(target)
		if err != nil {
			return created, err
		}
		out, remove, err := edit(bytes.Clone(old), fi != nil)
		if err != nil {
			return created, err
		}
		if !remove && (fi != nil || out == nil) && bytes.Equal(out, old) {
			return created, nil
		}
		unchanged := func() error {
			cur, cfi, err := readOptional(target)
			if err != nil {
				return err
			}
			if (cfi != nil) != (fi != nil) || !bytes.Equal(cur, old) {
				return errConfigChanged
			}
			return nil
		}
		if remove {
			err = unchanged()
			if err == nil {
				err = os.Remove(target)
			}
		} else {
			mode, fileOwner := fs.FileMode(0o600), owner
			if fi != nil {
				mode, fileOwner = fi.Mode().Perm(), keepOwner(fi)
			}
			if before != nil {
				if err := before(slices.Concat(created, missingDirs(filepath.Dir(target)))); err != nil {
					return created, err
				}
			}
			var made []string
			made, err = mkdirAllOwned(filepath.Dir(target), owner)
			created = append(created, made...)
			if err == nil {
				err = writeFileAtomic(target, out, mode, fileOwner, unchanged)
			}
		}
		if errors.Is(err, errConfigChanged) && attempt < maxConfigAttempts {
			continue
		}
		return created, err
	}
}
