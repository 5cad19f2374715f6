package credhelper

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteFileAtomicLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	if err := writeFileAtomic(path, []byte("one"), 0o600, nil, nil); err != nil {
		t.Fatal(err)
	}
	veto := errors.New("veto")
	err := writeFileAtomic(path, []byte("two"), 0o600, nil, func() error { return veto })
	if !errors.Is(err, veto) {
		t.Fatalf("writeFileAtomic with a failing check = %v, want the check's error", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "one" {
		t.Errorf("a vetoed write changed the file to %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after the writes, want just the file", len(entries))
	}
}

func TestMkdirAllOwned(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "b", "c")
	created, err := mkdirAllOwned(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(base, "a"), filepath.Join(base, "a", "b"), dir}
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	if runtime.GOOS != "windows" {
		for _, d := range want {
			assertMode(t, d, os.ModeDir|0o700)
		}
	}
	if created, err := mkdirAllOwned(dir, nil); err != nil || len(created) != 0 {
		t.Errorf("second mkdirAllOwned = %v, %v; want nothing created", created, err)
	}
}

func TestResolveSymlinks(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks need a privilege on Windows")
	}
	dir := t.TempDir()
	final := filepath.Join(dir, "real", "config.json")
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		t.Fatal(err)
	}
	mid := filepath.Join(dir, "mid.json")
	link := filepath.Join(dir, "config.json")
	if err := os.Symlink("real/config.json", mid); err != nil { // dangling for now
		t.Fatal(err)
	}
	if err := os.Symlink(mid, link); err != nil {
		t.Fatal(err)
	}
	if got, err := resolveSymlinks(link); err != nil || got != final {
		t.Errorf("resolveSymlinks(dangling chain) = %q, %v; want %q", got, err, final)
	}
	loop := filepath.Join(dir, "loop")
	if err := os.Symlink("loop", loop); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveSymlinks(loop); err == nil {
		t.Error("resolveSymlinks of a loop succeeded")
	}
}
