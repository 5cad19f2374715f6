package main

import "github.com/edgecr/edgecr/server/kv/kvtest"

// storageName says in a report where edgecrd kept its images.
func storageName(storage string) string {
	if storage == "s3" {
		return "a bucket (`edgecrd serve --storage s3://BUCKET/PREFIX?endpoint=...`) on the pinned MinIO " + kvtest.MinIOVersion + " on loopback"
	}
	return "a data dir"
}
