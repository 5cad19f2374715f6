package server

import "github.com/edgecr/edgecr/server/kv"

// lockFile is the advisory lock every edgecrd process takes before it
// writes shared state in the data dir (kv.LockFile: flock on unix,
// LockFileEx on Windows).
var lockFile = kv.LockFile
