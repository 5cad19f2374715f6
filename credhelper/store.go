package credhelper

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	"github.com/docker/docker-credential-helpers/credentials"
)

// errNoPath is returned by every operation of a Store without a path, which
// is what DefaultPath gives when it cannot locate the user's config dir.
var errNoPath = fmt.Errorf("no credentials file: cannot locate the config directory, set %s", ConfigDirEnv)

// Store is a credentials.Helper that keeps one credential per registry
// host:port in a JSON file (mode 0600, directory 0700), written atomically
// under a lock and only when it changes.
type Store struct {
	path string
	opts options
}

var _ credentials.Helper = (*Store)(nil)

// NewStore returns the store kept in the file at path (see DefaultPath).
// Nothing is read or created until it is used.
func NewStore(path string, opts ...Option) *Store {
	return &Store{path: path, opts: newOptions(opts)}
}

// Path returns the file the store is kept in.
func (s *Store) Path() string { return s.path }

// Add stores c under c.ServerURL's host:port, replacing what was there.
// docker login calls it through `store`.
func (s *Store) Add(c *credentials.Credentials) error {
	if c == nil {
		return errors.New("storing credentials: none given")
	}
	key, err := normalizeServerURL(c.ServerURL)
	if err != nil {
		return fmt.Errorf("storing credentials: %w", err)
	}
	if c.Username == "" {
		return fmt.Errorf("storing credentials for %s: %w", key, credentials.NewErrCredentialsMissingUsername())
	}
	e := credEntry{Username: c.Username, Secret: c.Secret}
	return s.update(true, func(reg map[string]credEntry) {
		reg[key] = e
	})
}

// Delete removes the credential of serverURL's host:port. Deleting one that
// is not there is not an error: `docker logout` erases every address it
// knows for the registry (so the second erase finds nothing), and `edgecr
// leave` must be safe to run again; the state the caller asks for, no
// credential, holds either way. A missing file or directory is not created.
func (s *Store) Delete(serverURL string) error {
	key, err := normalizeServerURL(serverURL)
	if err != nil {
		return nil // no entry can have this key
	}
	return s.update(false, func(reg map[string]credEntry) {
		delete(reg, key)
	})
}

// Get returns the username and secret for serverURL's host:port, which
// matches "host:port", "https://host:port" and "host:port/repo" alike and
// never another host or port. A missing entry (or file) is exactly
// credentials' not-found error, which docker treats as "no credentials".
func (s *Store) Get(serverURL string) (string, string, error) {
	key, err := normalizeServerURL(serverURL)
	if err != nil {
		return "", "", credentials.NewErrCredentialsNotFound()
	}
	f, err := s.read()
	if err != nil {
		return "", "", err
	}
	e, ok := f.Registries[key]
	if !ok {
		return "", "", credentials.NewErrCredentialsNotFound()
	}
	return e.Username, e.Secret, nil
}

// List returns every stored host:port with its username.
func (s *Store) List() (map[string]string, error) {
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(f.Registries))
	for k, e := range f.Registries {
		out[k] = e.Username
	}
	return out, nil
}

// read loads the file; a missing file is an empty store.
func (s *Store) read() (credFile, error) {
	if s.path == "" {
		return credFile{}, errNoPath
	}
	target, err := s.opts.resolve(s.path)
	if err != nil {
		return credFile{}, err
	}
	release, err := lockForRead(target, s.opts.lockTimeout)
	if err != nil {
		return credFile{}, err
	}
	defer release()
	data, _, err := readOptional(target)
	if err != nil {
		return credFile{}, err
	}
	f, err := decodeCredFile(data)
	if err != nil {
		return credFile{}, fmt.Errorf("reading credentials file %s: %w", target, err)
	}
	return f, nil
}

// update applies edit to the registries under the write lock and writes the
// file if they changed. With create false, a missing file stays missing
// (and no directory or lock file is made for it).
func (s *Store) update(create bool, edit func(map[string]credEntry)) error {
	if s.path == "" {
		return errNoPath
	}
	target, err := s.opts.resolve(s.path)
	if err != nil {
		return err
	}
	if !create {
		if _, err := os.Stat(target); errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	if _, err := mkdirAllOwned(filepath.Dir(target), s.opts.owner); err != nil {
		return err
	}
	release, err := lockForWrite(target, s.opts.lockTimeout, s.opts.owner)
	if err != nil {
		return err
	}
	defer release()
	data, fi, err := readOptional(target)
	if err != nil {
		return err
	}
	f, err := decodeCredFile(data)
	if err != nil {
		return fmt.Errorf("reading credentials file %s: %w", target, err)
	}
	before := maps.Clone(f.Registries)
	edit(f.Registries)
	if data != nil && maps.Equal(before, f.Registries) {
		return nil
	}
	owner := s.opts.owner
	if owner == nil && fi != nil {
		owner = keepOwner(fi) // root rewriting a user's file leaves it theirs
	}
	return writeFileAtomic(target, f.encode(), 0o600, owner, nil)
}
