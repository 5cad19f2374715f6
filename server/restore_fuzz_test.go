package server

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func FuzzArchivePath(f *testing.F) {
	for _, s := range []string{"device.json", "registry/docker/registry/v2/blobs/sha256/ab/abcd/data", "../x", "/etc/passwd", "a//b", ".owner.lock", "a/./b", "a\\b", "c:x", "dir/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := archivePath(name)
		if err != nil {
			return
		}
		if !filepath.IsLocal(filepath.FromSlash(n)) {
			t.Fatalf("archivePath(%q) = %q, not local", name, n)
		}
		for _, c := range filepath.SplitList(n) {
			if c == ".." {
				t.Fatalf("archivePath(%q) = %q", name, n)
			}
		}
	})
}

// Whatever the archive, Restore either succeeds or leaves nothing behind,
// and never writes outside the target's parent.
func FuzzRestore(f *testing.F) {
	src := f.TempDir()
	st, err := Ensure(src, testOptions("box1"), time.Now())
	if err != nil {
		f.Fatal(err)
	}
	var good bytes.Buffer
	if _, err := st.Backup(context.Background(), &good, false, time.Now()); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	tw.WriteHeader(&tar.Header{Name: "../escape", Mode: 0o600, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	f.Add(evil.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		top := t.TempDir()
		parent := filepath.Join(top, "p")
		dst := filepath.Join(parent, "new")
		_, err := Restore(context.Background(), bytes.NewReader(b), dst, RestoreOptions{}, time.Now())
		ents, _ := os.ReadDir(parent)
		if err != nil && len(ents) != 0 {
			t.Fatalf("failed restore (%v) left %v", err, ents)
		}
		if err == nil && (len(ents) != 1 || ents[0].Name() != "new") {
			t.Fatalf("restore left %v", ents)
		}
		if tops, _ := os.ReadDir(top); len(tops) != 1 {
			t.Fatalf("restore wrote next to its parent: %v", tops)
		}
	})
}
