// Package kv is the shared-state seam of edgecrd: a small versioned
// key-value store whose writes are compare-and-swap, so that several edgecrd
// processes (admin commands beside serve, or replicas on one bucket) change
// the same state without a lock service of their own.
//
// Two implementations pass one contract (package kvtest): Dir, files in a
// directory, and S3, objects in a bucket changed with conditional writes
// (If-Match / If-None-Match), as Terraform's S3 backend does for its lock.
package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Version identifies one value of one key. It is opaque: compare versions
// only for equality, and pass them back to Put, Delete and GetIfChanged.
// Both implementations derive it from the content (a hash, an S3 ETag), so
// writing the same bytes again gives the same version.
type Version string

var (
	// ErrNotFound: the key does not exist (Get, GetIfChanged).
	ErrNotFound = errors.New("key not found")
	// ErrConflict: a conditional write lost: the key exists (Put
	// create-only) or its version is not the one given (Put, Delete),
	// including when it no longer exists. Read again and retry.
	ErrConflict = errors.New("version conflict")
)

// Store is a versioned key-value store. Keys are checked by ValidKey.
type Store interface {
	// Get returns the value of key and its version, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, Version, error)
	// GetIfChanged is the cheap poll of an in-memory cache: when key's
	// version is still ver it returns changed=false and no value (for S3 a
	// conditional GET answered 304, with no body); otherwise it returns the
	// current value and version like Get.
	GetIfChanged(ctx context.Context, key string, ver Version) (val []byte, newVer Version, changed bool, err error)
	// Put writes val under key if key's current version is ifVer, or, when
	// ifVer is "", only if key does not exist (create-only). It returns the
	// new version, or ErrConflict.
	Put(ctx context.Context, key string, val []byte, ifVer Version) (Version, error)
	// Delete removes key if its version is ifVer (ErrConflict otherwise,
	// also when it does not exist). With ifVer "" it removes key whatever
	// its version, and deleting a key that does not exist is not an error.
	Delete(ctx context.Context, key string, ifVer Version) error
	// List returns up to limit keys that start with prefix and sort after
	// after (byte order), in byte order. Fewer than limit means the end;
	// the next page starts after the last key returned.
	List(ctx context.Context, prefix, after string, limit int) ([]string, error)
}

// VersionLister is a Store that lists keys with their versions, a page
// of up to 1,000 in one request (S3's ListObjectsV2 names every object's
// ETag): a cache of many keys learns which changed without reading each.
// The versions are those Get returns. Paging is List's.
type VersionLister interface {
	ListVersions(ctx context.Context, prefix, after string, limit int) ([]KeyVersion, error)
}

// KeyVersion is a key and the version of its current value.
type KeyVersion struct {
	Key     string
	Version Version
}

// Key limits: S3 allows 1024-byte keys; a Dir key becomes a path whose
// segments must fit a file name (255 bytes) after escaping (up to 3 bytes
// per byte), hence the per-segment limit.
const (
	MaxKeyLen     = 512
	MaxSegmentLen = 80
)

// ValidKey reports whether key can be stored: 1 to MaxKeyLen bytes of
// UTF-8 without control characters, space or "!", made of "/"-separated
// segments that are non-empty, at most MaxSegmentLen bytes, and not "." or
// "..". (The S3 store ends object names with "!", which sorts before every
// byte a key may hold: so "a" and "a/b" can both exist on MinIO, whose
// objects are directories on disk, and objects list in key order.)
func ValidKey(key string) error {
	if key == "" {
		return errors.New("invalid key: empty")
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("invalid key %.40q...: %d bytes, more than %d", key, len(key), MaxKeyLen)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("invalid key %q: not UTF-8", key)
	}
	for _, r := range key {
		if r <= ' ' || r == '!' || r == 0x7f {
			return fmt.Errorf("invalid key %q: character %q (no control characters, space or !)", key, r)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("invalid key %q: empty segment (leading, trailing or double /)", key)
		case seg == "." || seg == "..":
			return fmt.Errorf("invalid key %q: segment %q", key, seg)
		case len(seg) > MaxSegmentLen:
			return fmt.Errorf("invalid key %q: segment of %d bytes, more than %d", key, len(seg), MaxSegmentLen)
		}
	}
	return nil
}

// validPrefix checks a List prefix: "" or a string a valid key could start with.
func validPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > MaxKeyLen || !utf8.ValidString(prefix) || strings.HasPrefix(prefix, "/") || strings.Contains(prefix, "//") || strings.ContainsAny(prefix, " !") {
		return fmt.Errorf("invalid list prefix %q", prefix)
	}
	return nil
}

func checkLimit(limit int) error {
	if limit < 1 {
		return fmt.Errorf("invalid list limit %d: want at least 1", limit)
	}
	return nil
}
