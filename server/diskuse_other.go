//go:build !unix

package server

import "io/fs"

// allocated is the disk space fi takes, estimated as whole 4 KiB clusters
// (NTFS's default); a directory takes at least one.
func allocated(fi fs.FileInfo) int64 {
	if fi.IsDir() {
		return max(roundBlock(fi.Size()), diskBlock)
	}
	return roundBlock(fi.Size())
}

// diskSpace is the space free on the filesystem holding dir, and its
// size (Windows: GetDiskFreeSpaceEx; elsewhere not known).
func diskSpace(dir string) (free, total int64, err error) {
	return diskSpaceOS(dir)
}
