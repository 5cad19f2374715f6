package hostsfile

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeHosts creates dir/hosts with content and mode, and returns its path.
func writeHosts(t *testing.T, dir, content string, mode fs.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, "hosts")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func stat(t *testing.T, path string) fs.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// dirNames lists dir, to see that no temporary file stays behind.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestFileAddRemove(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := writeHosts(t, dir, userHosts, 0o640)
	f := NewFile(path)
	if f.Path() != path {
		t.Errorf("Path() = %q, want %q", f.Path(), path)
	}

	before := stat(t, path)
	changed, err := f.Add(ctx, ip1, host)
	if err != nil || !changed {
		t.Fatalf("Add = %v, %v; want true, nil", changed, err)
	}
	if got, want := readFile(t, path), userHosts+blk("192.0.2.10", host, "\n"); got != want {
		t.Errorf("after Add: %q, want %q", got, want)
	}
	after := stat(t, path)
	if os.SameFile(before, after) {
		t.Errorf("Add wrote in place; want a new file renamed over the old one")
	}
	if runtime.GOOS != "windows" && after.Mode().Perm() != 0o640 {
		t.Errorf("mode after Add = %v, want 0640", after.Mode().Perm())
	}
	if got, want := dirNames(t, dir), []string{"hosts", "hosts.edgecr.lock"}; !slices.Equal(got, want) {
		t.Errorf("directory holds %q, want %q", got, want)
	}

	entries, err := f.Lookup(ctx, host)
	if err != nil || len(entries) != 1 || !entries[0].Owned || entries[0].Addr != ip1 {
		t.Errorf("Lookup = %+v, %v; want one owned entry for %v", entries, err, ip1)
	}

	changed, err = f.Add(ctx, ip1, host)
	if err != nil || changed {
		t.Fatalf("second Add = %v, %v; want false, nil", changed, err)
	}
	if !os.SameFile(after, stat(t, path)) {
		t.Errorf("second Add rewrote the file; want no write when nothing changes")
	}

	changed, err = f.Remove(ctx, host)
	if err != nil || !changed {
		t.Fatalf("Remove = %v, %v; want true, nil", changed, err)
	}
	if got := readFile(t, path); got != userHosts {
		t.Errorf("after Remove: %q, want the original %q", got, userHosts)
	}
	changed, err = f.Remove(ctx, host)
	if err != nil || changed {
		t.Fatalf("second Remove = %v, %v; want false, nil", changed, err)
	}
}

func TestFileMissing(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hosts")
	f := NewFile(path)

	if b, err := f.Read(ctx); err != nil || len(b) != 0 {
		t.Errorf("Read = %q, %v; want empty, nil", b, err)
	}
	if changed, err := f.Remove(ctx, host); err != nil || changed {
		t.Errorf("Remove = %v, %v; want false, nil", changed, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove created the file: %v", err)
	}
	if changed, err := f.Add(ctx, ip1, host); err != nil || !changed {
		t.Fatalf("Add = %v, %v; want true, nil", changed, err)
	}
	if got, want := readFile(t, path), blk("192.0.2.10", host, "\n"); got != want {
		t.Errorf("created %q, want %q", got, want)
	}
	if runtime.GOOS != "windows" && stat(t, path).Mode().Perm() != 0o644 {
		t.Errorf("created with mode %v, want 0644", stat(t, path).Mode().Perm())
	}
}

func TestFileRefusesUserLine(t *testing.T) {
	in := "127.0.0.1 localhost\r\n10.9.9.9 " + host + "\r\n"
	path := writeHosts(t, t.TempDir(), in, 0o644)
	before := stat(t, path)
	changed, err := NewFile(path).Add(t.Context(), ip1, host)
	if !errors.Is(err, ErrHostOwnedByUser) || changed {
		t.Fatalf("Add = %v, %v; want false, ErrHostOwnedByUser", changed, err)
	}
	for _, want := range []string{path, "line 2", "10.9.9.9 " + host} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if got := readFile(t, path); got != in || !os.SameFile(before, stat(t, path)) {
		t.Errorf("file touched: %q", got)
	}
}

func TestFileInvalidInputTakesNoLock(t *testing.T) {
	dir := t.TempDir()
	f := NewFile(filepath.Join(dir, "hosts"))
	if _, err := f.Add(t.Context(), ip1, "bad host"); !errors.Is(err, ErrInvalidHost) {
		t.Errorf("Add: got %v, want ErrInvalidHost", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("directory holds %q, want nothing", names)
	}
}

func TestFileFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	target := writeHosts(t, filepath.Join(dir), userHosts, 0o644)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("cannot make a symbolic link here: %v", err)
	}
	if _, err := NewFile(link).Add(t.Context(), ip1, host); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("link is no longer a symbolic link: %v, %v", fi, err)
	}
	if got, want := readFile(t, target), userHosts+blk("192.0.2.10", host, "\n"); got != want {
		t.Errorf("target holds %q, want %q", got, want)
	}
}

func TestFileInPlaceFallback(t *testing.T) {
	for _, renameErr := range renameBlockedErrs {
		t.Run(renameErr.Error(), func(t *testing.T) {
			dir := t.TempDir()
			path := writeHosts(t, dir, userHosts, 0o640)
			before := stat(t, path)
			var logs bytes.Buffer
			f := NewFile(path, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			f.rename = func(oldpath, newpath string) error {
				return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: renameErr}
			}

			if changed, err := f.Add(t.Context(), ip1, host); err != nil || !changed {
				t.Fatalf("Add = %v, %v; want true, nil", changed, err)
			}
			if got, want := readFile(t, path), userHosts+blk("192.0.2.10", host, "\n"); got != want {
				t.Errorf("after Add: %q, want %q", got, want)
			}
			if changed, err := f.Remove(t.Context(), host); err != nil || !changed {
				t.Fatalf("Remove = %v, %v; want true, nil", changed, err)
			}
			if got := readFile(t, path); got != userHosts {
				t.Errorf("after Remove (shorter: truncated): %q, want %q", got, userHosts)
			}
			after := stat(t, path)
			if !os.SameFile(before, after) {
				t.Errorf("the file was replaced; want it written in place")
			}
			if runtime.GOOS != "windows" && after.Mode().Perm() != 0o640 {
				t.Errorf("mode = %v, want 0640", after.Mode().Perm())
			}
			if got, want := dirNames(t, dir), []string{"hosts", "hosts.edgecr.lock"}; !slices.Equal(got, want) {
				t.Errorf("directory holds %q, want %q", got, want)
			}
			if !strings.Contains(logs.String(), "in place") {
				t.Errorf("no log of the write in place: %q", logs.String())
			}
		})
	}
}

func TestFileRenameFails(t *testing.T) {
	dir := t.TempDir()
	path := writeHosts(t, dir, userHosts, 0o644)
	f := NewFile(path)
	boom := errors.New("boom")
	f.rename = func(string, string) error { return boom }
	if changed, err := f.Add(t.Context(), ip1, host); !errors.Is(err, boom) || changed {
		t.Fatalf("Add = %v, %v; want false, boom", changed, err)
	}
	if got := readFile(t, path); got != userHosts {
		t.Errorf("file changed: %q", got)
	}
	if got, want := dirNames(t, dir), []string{"hosts", "hosts.edgecr.lock"}; !slices.Equal(got, want) {
		t.Errorf("directory holds %q, want %q: temporary file left behind", got, want)
	}
}

func TestFileWaitsForLock(t *testing.T) {
	path := writeHosts(t, t.TempDir(), userHosts, 0o644)
	f := NewFile(path)
	unlock, err := lockFile(t.Context(), f.lockPath(), path)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.Add(ctx, ip1, host); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add while locked: got %v, want context.DeadlineExceeded", err)
	}
	if got := readFile(t, path); got != userHosts {
		t.Errorf("file changed while locked: %q", got)
	}

	done := make(chan error)
	go func() {
		_, err := f.Add(t.Context(), ip1, host)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Add after unlock: %v", err)
	}
}

func TestFileCanceledContext(t *testing.T) {
	path := writeHosts(t, t.TempDir(), userHosts, 0o644)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f := NewFile(path)
	if _, err := f.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Read: got %v, want context.Canceled", err)
	}
	if _, err := f.Lookup(ctx, host); !errors.Is(err, context.Canceled) {
		t.Errorf("Lookup: got %v, want context.Canceled", err)
	}
	if got := readFile(t, path); got != userHosts {
		t.Errorf("file changed: %q", got)
	}
}
