package hostsfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"

	"golang.org/x/sys/unix"
)

// bindMount mounts src on dst (with MS_RDONLY in flags, read-only) for the
// duration of the test, or skips the test where mounting is not allowed.
func bindMount(t *testing.T, src, dst string, flags uintptr) {
	t.Helper()
	testenv.NeedRoot(t, "bind-mounting a hosts file")
	err := unix.Mount(src, dst, "", unix.MS_BIND, "")
	testenv.Need(t, err == nil, fmt.Sprintf("cannot bind-mount here: %v", err))
	t.Cleanup(func() {
		if err := unix.Unmount(dst, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dst, err)
		}
	})
	if flags != 0 {
		if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|flags, ""); err != nil {
			t.Fatalf("remounting %s: %v", dst, err)
		}
	}
}

// TestFileBindMount edits a hosts file that is a bind mount, as /etc/hosts
// is inside a Docker container: rename onto it fails with EBUSY, and the
// file is written in place.
func TestFileBindMount(t *testing.T) {
	dir := t.TempDir()
	src := writeHosts(t, t.TempDir(), userHosts, 0o644)
	path := writeHosts(t, dir, "", 0o644)
	bindMount(t, src, path, 0)
	if err := os.Rename(writeHosts(t, t.TempDir(), "", 0o644), path); !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EXDEV) {
		t.Fatalf("rename onto the bind mount: %v; want EBUSY or EXDEV", err)
	}

	f := NewFile(path)
	if changed, err := f.Add(t.Context(), ip1, host); err != nil || !changed {
		t.Fatalf("Add = %v, %v; want true, nil", changed, err)
	}
	want := userHosts + blk("192.0.2.10", host, "\n")
	if got := readFile(t, src); got != want {
		t.Errorf("mounted file holds %q, want %q", got, want)
	}
	if changed, err := f.Remove(t.Context(), host); err != nil || !changed {
		t.Fatalf("Remove = %v, %v; want true, nil", changed, err)
	}
	if got := readFile(t, src); got != userHosts {
		t.Errorf("mounted file holds %q, want %q", got, userHosts)
	}
}

// TestFileReadOnlyDir edits a writable hosts file in a read-only directory,
// as in a container started with --read-only: neither a lock file nor a
// temporary file can be made, so the hosts file itself is locked and
// written in place.
func TestFileReadOnlyDir(t *testing.T) {
	etc := t.TempDir()
	path := writeHosts(t, etc, "", 0o644)
	bindMount(t, etc, etc, unix.MS_RDONLY)
	bindMount(t, writeHosts(t, t.TempDir(), userHosts, 0o644), path, 0)

	f := NewFile(path)
	if changed, err := f.Add(t.Context(), ip1, host); err != nil || !changed {
		t.Fatalf("Add = %v, %v; want true, nil", changed, err)
	}
	if got, want := readFile(t, path), userHosts+blk("192.0.2.10", host, "\n"); got != want {
		t.Errorf("after Add: %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(etc, "hosts.edgecr.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file in a read-only directory: %v", err)
	}
}

func TestCopyXattr(t *testing.T) {
	dir := t.TempDir()
	src := writeHosts(t, dir, userHosts, 0o644)
	const name = "user.edgecr.test"
	if err := unix.Setxattr(src, name, []byte("system_u:object_r:net_conf_t:s0"), 0); err != nil {
		t.Skipf("no user extended attributes here: %v", err)
	}
	dst, err := os.CreateTemp(dir, "dst")
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := copyXattr(src, dst, name); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := unix.Fgetxattr(int(dst.Fd()), name, buf)
	if err != nil || string(buf[:n]) != "system_u:object_r:net_conf_t:s0" {
		t.Errorf("copied attribute = %q, %v", buf[:n], err)
	}
	if err := copyXattr(src, dst, "user.edgecr.absent"); err != nil {
		t.Errorf("copying an absent attribute: %v", err)
	}
}

// TestFileInPlaceDiskFull writes in place into a bind-mounted hosts file on
// a full file system: the write fails, the old content is put back, and the
// error says so.
func TestFileInPlaceDiskFull(t *testing.T) {
	testenv.NeedRoot(t, "mounting a small tmpfs")
	small := t.TempDir()
	err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=4k")
	testenv.Need(t, err == nil, fmt.Sprintf("cannot mount tmpfs here: %v", err))
	t.Cleanup(func() {
		if err := unix.Unmount(small, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", small, err)
		}
	})
	// The file fills the one page the file system has; the block needs a second.
	full := userHosts + strings.Repeat("# filler\n", (4096-len(userHosts))/9)
	src := writeHosts(t, small, full, 0o644)
	path := writeHosts(t, t.TempDir(), "", 0o644)
	bindMount(t, src, path, 0)

	_, err = NewFile(path).Add(t.Context(), ip1, host)
	if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "old content restored") {
		t.Fatalf("Add: got %v, want ENOSPC with the old content restored", err)
	}
	if got := readFile(t, src); got != full {
		t.Errorf("file holds %d bytes %q..., want the old %d bytes", len(got), got[:min(len(got), 40)], len(full))
	}
}
