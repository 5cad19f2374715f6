package hostsfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/edgecr/edgecr/internal/fsretry"
)

// File is a hosts file on disk. Add and Remove read, transform and write it
// while holding an exclusive lock on a lock file next to it, so that
// concurrent edgecr processes (and goroutines) lose none of each other's
// changes.
type File struct {
	path   string
	lock   string // lock file; "" = path + ".edgecr.lock"
	logger *slog.Logger
	rename func(oldpath, newpath string) error // fsretry.Rename; tests inject failures
}

// Option configures a File.
type Option func(*File)

// WithLogger makes the File log what it does that the caller cannot see in
// its results (a write in place instead of a rename). By default it logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(f *File) { f.logger = l }
}

// NewFile returns the hosts file at path (see [DefaultPath]). Nothing is
// read or created until a method is called.
func NewFile(path string, opts ...Option) *File {
	f := &File{path: path, logger: slog.New(slog.DiscardHandler), rename: fsretry.Rename}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Path returns the path the File was created with.
func (f *File) Path() string { return f.path }

// WithLockPath sets the lock file writers take (default: the hosts file's
// path + ".edgecr.lock"). edgecr join/leave put it in their own state
// directory, which they remove when nothing is joined, so that no file of
// ours is left in /etc. Every writer of one hosts file must use the same
// lock path.
func WithLockPath(p string) Option {
	return func(f *File) { f.lock = p }
}

// lockPath is the lock file every writer locks: the hosts file itself cannot
// serve, since an atomic write replaces it with a new file. The lock file
// stays after use: removing it would let two writers lock two different files.
func (f *File) lockPath() string {
	if f.lock != "" {
		return f.lock
	}
	return f.path + ".edgecr.lock"
}

// Read returns the content of the file; a file that does not exist reads as
// empty. It takes no lock (so that `edgecr status` needs no privileges).
func (f *File) Read(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("reading hosts file: %w", err)
	}
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading hosts file: %w", err)
	}
	return b, nil
}

// Lookup reads the file and returns its lines that map host (see [Lookup]).
func (f *File) Lookup(ctx context.Context, host string) ([]Entry, error) {
	b, err := f.Read(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := Lookup(b, host)
	if err != nil {
		return nil, fmt.Errorf("looking up %s in %s: %w", host, f.path, err)
	}
	return entries, nil
}

// Add maps host to ip in the file (see [Add]) and reports whether the file
// changed; a file that does not exist is created with mode 0644.
//
// The new content is written to a temporary file in the same directory,
// synced, given the old file's mode, owner and SELinux label, and renamed
// over the hosts file, so that a reader sees the old file or the new one.
// A symbolic link is followed and stays a link. When the rename or the
// temporary file is refused (inside a container /etc/hosts is a bind mount,
// and rename onto a mount point fails with EBUSY or EXDEV; with a read-only
// root file system only the hosts file itself is writable), the file is
// rewritten in place instead: still under the lock, so no edgecr writer
// interleaves, but a reader may see a partly written file for a moment.
// This is what Docker itself does to that file.
func (f *File) Add(ctx context.Context, ip netip.Addr, host string) (bool, error) {
	add := func(b []byte) ([]byte, error) { return Add(b, ip, host) }
	changed, err := f.update(ctx, add)
	if err != nil {
		return changed, fmt.Errorf("adding %s to %s: %w", host, f.path, err)
	}
	return changed, nil
}

// AddAll maps host to every address of ips in the file (see [AddAll]),
// writing as Add does, and reports whether the file changed.
func (f *File) AddAll(ctx context.Context, ips []netip.Addr, host string) (bool, error) {
	add := func(b []byte) ([]byte, error) { return AddAll(b, ips, host) }
	changed, err := f.update(ctx, add)
	if err != nil {
		return changed, fmt.Errorf("adding %s to %s: %w", host, f.path, err)
	}
	return changed, nil
}

// Remove removes the block of host from the file (see [Remove]) and
// reports whether the file changed. It writes as Add does; a missing file
// is left missing.
func (f *File) Remove(ctx context.Context, host string) (bool, error) {
	remove := func(b []byte) ([]byte, error) { return Remove(b, host) }
	changed, err := f.update(ctx, remove)
	if err != nil {
		return changed, fmt.Errorf("removing %s from %s: %w", host, f.path, err)
	}
	return changed, nil
}

// update runs transform on the file's content and writes the result when
// it differs, all under the lock.
func (f *File) update(ctx context.Context, transform func([]byte) ([]byte, error)) (changed bool, err error) {
	// An invalid host or IP fails on empty content too: no need to lock for that.
	if _, err := transform(nil); err != nil {
		return false, err
	}
	// In a container started with --read-only, /etc is read-only but
	// /etc/hosts stays a writable bind mount: no lock file can be made there,
	// so every writer locks the hosts file itself, which is then always
	// rewritten in place and keeps its identity.
	unlock, err := lockFile(ctx, f.lockPath(), f.path)
	if err != nil {
		return false, err
	}
	defer func() {
		if uerr := unlock(); uerr != nil && err == nil {
			err = fmt.Errorf("unlocking %s: %w", f.lockPath(), uerr)
		}
	}()

	target, err := resolve(f.path)
	if err != nil {
		return false, err
	}
	var old []byte
	info, err := os.Stat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		info = nil
	case err != nil:
		return false, fmt.Errorf("reading hosts file: %w", err)
	default:
		if old, err = os.ReadFile(target); err != nil {
			return false, fmt.Errorf("reading hosts file: %w", err)
		}
	}

	b, err := transform(old)
	if err != nil {
		return false, err
	}
	if bytes.Equal(b, old) {
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := f.write(target, b, old, info); err != nil {
		return false, err
	}
	return true, nil
}

// resolve follows symbolic links in path, so that a write replaces the file
// a link points to and not the link. A path that does not exist yet
// resolves to itself.
func resolve(path string) (string, error) {
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	if err != nil {
		return "", fmt.Errorf("resolving hosts file path: %w", err)
	}
	return target, nil
}
