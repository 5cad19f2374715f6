package server

import (
	"io/fs"
	"path/filepath"
	"strings"
)

// diskBlock is the allocation unit assumed where the OS does not say.
const diskBlock = 4096

func roundBlock(n int64) int64 { return (n + diskBlock - 1) / diskBlock * diskBlock }

// uploadSessionPath reports whether p (an OS path) is an upload session's
// directory or inside one: ".../_uploads/<id>[/...]". Repository name
// components cannot start with "_", so the marker is the uploads dir.
func uploadSessionPath(p string) bool {
	return strings.Contains(filepath.ToSlash(p), "/_uploads/")
}

// entrySize is what the quota counts for one entry of the storage tree:
// the size of a regular file, except inside an upload session, where
// every file and directory counts the disk it takes. An empty session is
// six inodes and some 24 KiB of disk for a few hundred bytes of files, and
// a client can open many.
func entrySize(p string, e fs.DirEntry) int64 {
	if uploadSessionPath(p) {
		if info, err := e.Info(); err == nil {
			return allocated(info)
		}
		return 0
	}
	if e.IsDir() {
		return 0
	}
	if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
		return info.Size()
	}
	return 0
}
