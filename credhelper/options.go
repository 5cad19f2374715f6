package credhelper

import "time"

// ownerID is the numeric user and group that created files are given, used
// when edgecr runs under sudo on behalf of $SUDO_USER.
type ownerID struct {
	UID, GID int
}

// Option configures a Store or RegisterFile.
type Option func(*options)

type options struct {
	owner       *ownerID
	home        string // the owner's home directory: paths stay in it
	lockTimeout time.Duration
	intent      func(Change) error
}

// defaultLockTimeout bounds how long a writer waits for another edgecr
// process; docker would rather see an error than hang.
const defaultLockTimeout = 10 * time.Second

func newOptions(opts []Option) options {
	o := options{lockTimeout: defaultLockTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithOwner says the files are another user's: edgecr runs as root on
// behalf of uid:gid (under sudo), whose home directory is home. Every file
// and directory that is created (credentials file, its lock file, missing
// parent directories, a new config.json) is given to uid:gid; existing
// files keep their owner.
//
// Root must not write where that user points it, so the path is confined:
// it must lie in home; below home, every directory, symbolic link and the
// file itself must be owned by the user or by root; and symbolic links are
// followed only while they stay in home (a dotfile manager's links do). A
// path that breaks a rule is refused with an error wrapping ErrUnsafePath
// that names the part and why. Owners are not set or checked on Windows,
// where a new file takes the ACL of its directory.
func WithOwner(uid, gid int, home string) Option {
	return func(o *options) {
		o.owner = &ownerID{UID: uid, GID: gid}
		o.home = home
	}
}

// WithLockTimeout sets how long a Store write waits for the lock held by
// another process before it gives up (default 10s).
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) { o.lockTimeout = d }
}

// WithIntent makes RegisterFile call fn with the Change it is about to make,
// after every check and before it creates a directory or writes the file,
// so that the caller records it first: a crash between the write and the
// caller's record of the result then loses nothing, since Applied tells from
// config.json whether that Change was made. The Change's CreatedDirs are
// the directories it is about to create. An error from fn stops
// RegisterFile before it writes. fn is not called when nothing changes, and
// may be called again when config.json changed under the write (the last
// call is the Change made).
func WithIntent(fn func(Change) error) Option {
	return func(o *options) { o.intent = fn }
}
