package credhelper

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker-credential-helpers/credentials"
)

func TestStoreWaitsForLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	release, err := lockForWrite(path, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- NewStore(path).Add(&credentials.Credentials{ServerURL: testHost, Username: "u", Secret: testSecret})
	}()
	select {
	case err := <-done:
		release()
		t.Fatalf("Add went ahead while another process held the lock (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("Add after the lock was released: %v", err)
	}
}

func TestStoreLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	release, err := lockForWrite(path, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	err = NewStore(path, WithLockTimeout(30*time.Millisecond)).Add(&credentials.Credentials{ServerURL: testHost, Username: "u", Secret: testSecret})
	if !errors.Is(err, errLockTimeout) {
		t.Fatalf("Add while the lock is held = %v, want a lock timeout", err)
	}
	// Reads do not wait for writers where the OS does not need them to.
	if !readersNeedLock {
		if _, _, err := NewStore(path, WithLockTimeout(30*time.Millisecond)).Get(testHost); !credentials.IsErrCredentialsNotFound(err) {
			t.Errorf("Get while a writer holds the lock = %v, want not found", err)
		}
	}
}
