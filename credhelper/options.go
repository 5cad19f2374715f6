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
	lockTimeout time.Duration
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

// WithOwner makes every file and directory that is created (credentials
// file, its lock file, missing parent directories, a new config.json) owned
// by uid:gid. Existing files keep their owner. Ignored on Windows, where a
// new file takes the ACL of its directory.
func WithOwner(uid, gid int) Option {
	return func(o *options) { o.owner = &ownerID{UID: uid, GID: gid} }
}

// WithLockTimeout sets how long a Store write waits for the lock held by
// another process before it gives up (default 10s).
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) { o.lockTimeout = d }
}
