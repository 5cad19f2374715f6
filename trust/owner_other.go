//go:build !unix

package trust

import "io/fs"

// chownLike is a no-op where files have no Unix owner (Windows: new files
// inherit the directory's ACL).
func chownLike(string, fs.FileInfo) error { return nil }

// syncDir is a no-op where directories cannot be opened for syncing
// (Windows: MoveFileEx, behind os.Rename, is already durable enough).
func syncDir(string) error { return nil }
