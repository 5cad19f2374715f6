package fsretry

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/windows"
)

// openExclusive opens path as a program that does not share delete access
// does (the docker CLI, Notepad, most scanners): os.Rename over it fails
// with a sharing violation while the handle is open.
func openExclusive(t *testing.T, path string) windows.Handle {
	t.Helper()
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ, windows.FILE_SHARE_READ, nil, windows.OPEN_EXISTING, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Issue 17: os.Rename over a file another process holds open failed at
// once; Rename waits for the holder.
func TestRenameWaitsForHolder(t *testing.T) {
	dir := t.TempDir()
	target, src := filepath.Join(dir, "hosts"), filepath.Join(dir, "hosts.new")
	os.WriteFile(target, []byte("old"), 0o644)
	os.WriteFile(src, []byte("new"), 0o644)
	h := openExclusive(t, target)
	if err := os.Rename(src, target); err == nil {
		t.Fatal("os.Rename over a held file succeeded: the test holds nothing")
	}
	go func() { time.Sleep(300 * time.Millisecond); windows.CloseHandle(h) }()
	if err := Rename(src, target); err != nil {
		t.Fatalf("Rename = %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Errorf("target = %q", b)
	}
}

// A read-only hosts file is replaced and stays read-only.
func TestRenameReadOnlyTarget(t *testing.T) {
	dir := t.TempDir()
	target, src := filepath.Join(dir, "hosts"), filepath.Join(dir, "hosts.new")
	os.WriteFile(target, []byte("old"), 0o644)
	os.WriteFile(src, []byte("new"), 0o644)
	if err := os.Chmod(target, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := Rename(src, target); err != nil {
		t.Fatalf("Rename = %v", err)
	}
	fi, err := os.Stat(target)
	if err != nil || fi.Mode().Perm()&0o200 != 0 {
		t.Errorf("target mode %v, %v: want read-only", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Errorf("target = %q", b)
	}
	os.Chmod(target, 0o666)
}
