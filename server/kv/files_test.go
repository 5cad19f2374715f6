package kv_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// hexKeys runs the contract's keys (which hold characters a file name of
// Files may not) through a Files store: each key is stored under its hex
// encoding, which keeps byte order and prefixes, so List behaves the same.
type hexKeys struct{ s *kv.Files }

func hexKey(k string) string {
	if k == "" {
		return ""
	}
	return "k" + hex.EncodeToString([]byte(k))
}

func unhexKey(k string) string {
	b, _ := hex.DecodeString(k[1:])
	return string(b)
}

func (h hexKeys) Get(ctx context.Context, key string) ([]byte, kv.Version, error) {
	if err := kv.ValidKey(key); err != nil {
		return nil, "", err
	}
	return h.s.Get(ctx, hexKey(key))
}

func (h hexKeys) GetIfChanged(ctx context.Context, key string, ver kv.Version) ([]byte, kv.Version, bool, error) {
	if err := kv.ValidKey(key); err != nil {
		return nil, "", false, err
	}
	return h.s.GetIfChanged(ctx, hexKey(key), ver)
}

func (h hexKeys) Put(ctx context.Context, key string, val []byte, ifVer kv.Version) (kv.Version, error) {
	if err := kv.ValidKey(key); err != nil {
		return "", err
	}
	return h.s.Put(ctx, hexKey(key), val, ifVer)
}

func (h hexKeys) Delete(ctx context.Context, key string, ifVer kv.Version) error {
	if err := kv.ValidKey(key); err != nil {
		return err
	}
	return h.s.Delete(ctx, hexKey(key), ifVer)
}

func (h hexKeys) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if limit < 1 {
		return nil, errors.New("invalid limit")
	}
	// "k"+hex(prefix) is a prefix of every mapped key that starts with prefix.
	p := "k" + hex.EncodeToString([]byte(prefix))
	keys, err := h.s.List(ctx, p, hexKey(after), limit)
	for i, k := range keys {
		keys[i] = unhexKey(k)
	}
	return keys, err
}

func openFiles(t *testing.T) kv.Store {
	return hexKeys{kv.OpenFiles(filepath.Join(t.TempDir(), "data"))}
}

func TestFilesContract(t *testing.T) { kvtest.Run(t, openFiles) }

// TestFilesLayout: keys are the file names, with the modes asked for, and
// the store refuses names that are not plain file names or are reserved.
func TestFilesLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	f := kv.OpenFiles(root, kv.Reserved("registry"), kv.Mode(func(k string) fs.FileMode {
		if filepath.Ext(k) == ".crt" {
			return 0o644
		}
		return 0o600
	}))
	ctx := context.Background()
	for k, v := range map[string]string{"device.json": "{}\n", "ca.crt": "CERT", "leases/gc": "lease", "Mixed_Case-1.x": "m"} {
		if _, err := f.Put(ctx, k, []byte(v), ""); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(k)))
		if err != nil || string(b) != v {
			t.Fatalf("file of %q = %q, %v; want %q", k, b, err, v)
		}
	}
	for k, want := range map[string]fs.FileMode{"device.json": 0o600, "ca.crt": 0o644} {
		fi, err := os.Stat(filepath.Join(root, k))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("mode of %s = %v, %v; want %v", k, fi.Mode().Perm(), err, want)
		}
	}
	// Files that are not keys are not listed; a reserved name is refused.
	os.MkdirAll(filepath.Join(root, "registry", "docker"), 0o700)
	os.WriteFile(filepath.Join(root, "registry", "x"), nil, 0o600)
	os.WriteFile(filepath.Join(root, ".init.lock"), nil, 0o600)
	os.WriteFile(filepath.Join(root, "odd name"), nil, 0o600)
	keys, err := f.List(ctx, "", "", 100)
	if want := []string{"Mixed_Case-1.x", "ca.crt", "device.json", "leases/gc"}; err != nil || !slices.Equal(keys, want) {
		t.Fatalf("List = %q, %v; want %q", keys, err, want)
	}
	for _, k := range []string{"registry/x", ".hidden", "a/.b", "-x", "sp ace", "back\\slash", "con", "NUL.txt", "a/com1.json", "q?", "star*"} {
		if _, err := f.Put(ctx, k, []byte("x"), ""); err == nil {
			t.Errorf("Put(%q) accepted", k)
		}
		if _, _, err := f.Get(ctx, k); err == nil || errors.Is(err, kv.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want an invalid-key error", k, err)
		}
	}
	// A key under a file, and a directory read as a key, are absent.
	if _, _, err := f.Get(ctx, "device.json/x"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Get under a file: %v", err)
	}
	if _, _, err := f.Get(ctx, "leases"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Get of a directory: %v", err)
	}
	if err := f.Delete(ctx, "leases/gc", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "leases")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty directory of a deleted key left: %v", err)
	}
}

// TestFilesGetIfChangedStat: an unchanged file costs a stat, and a file
// replaced behind the store's back (another process) is seen.
func TestFilesGetIfChangedStat(t *testing.T) {
	root := t.TempDir()
	f := kv.OpenFiles(root)
	ctx := context.Background()
	v, err := f.Put(ctx, "identities.json", []byte("one"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, nv, changed, err := f.GetIfChanged(ctx, "identities.json", v); err != nil || changed || nv != v {
		t.Fatalf("unchanged: %v %v %v", nv, changed, err)
	}
	// Another process replaces it (same size).
	other := kv.OpenFiles(root)
	v2, err := other.Put(ctx, "identities.json", []byte("two"), v)
	if err != nil {
		t.Fatal(err)
	}
	val, nv, changed, err := f.GetIfChanged(ctx, "identities.json", v)
	if err != nil || !changed || nv != v2 || string(val) != "two" {
		t.Fatalf("after a write elsewhere: %q %v %v %v", val, nv, changed, err)
	}
}

// FuzzFileKey: a key FileKey accepts names a file inside the store's root,
// never the store's own files, and is a valid key.
func FuzzFileKey(f *testing.F) {
	for _, k := range []string{"device.json", "a/b", "..", "a/../b", ".lock", "con", "CON.txt", `a\b`, "/abs", "a//b", "ca.crt", "leases/gc"} {
		f.Add(k)
	}
	root := filepath.FromSlash("/store/root")
	f.Fuzz(func(t *testing.T, key string) {
		if kv.FileKey(key) != nil {
			return
		}
		if err := kv.ValidKey(key); err != nil {
			t.Fatalf("FileKey accepted %q, ValidKey refuses it: %v", key, err)
		}
		p := filepath.Join(root, filepath.FromSlash(key))
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.ToSlash(rel) != key {
			t.Fatalf("key %q maps to %s outside the root or to another name", key, p)
		}
		for _, seg := range strings.Split(key, "/") {
			if strings.HasPrefix(seg, ".") || strings.ContainsAny(seg, `\:*?"<>|`) {
				t.Fatalf("key %q has segment %q", key, seg)
			}
		}
	})
}
