package agent

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestStateFileRoundTripAndTidy(t *testing.T) {
	root := t.TempDir()
	f := NewStateFile(filepath.Join(root, "var/lib/edgecr/state.json"))
	st, err := f.Load()
	if err != nil || len(st.Registries) != 0 {
		t.Fatalf("Load of a missing file = %+v, %v", st, err)
	}
	release, err := f.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.put(&Entry{Registry: "ecr.a:1", Pin: "p", Steps: []string{StepBootstrap}})
	if err := f.Save(st); err != nil {
		t.Fatal(err)
	}
	release()
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(f.Path())
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("state mode = %v, %v", fi.Mode().Perm(), err)
		}
	}
	got, err := NewStateFile(f.Path()).Load()
	if err != nil || got.Find("ecr.a:1") == nil || got.FindPin("p") == nil || len(got.CreatedDirs) != 3 {
		t.Fatalf("reloaded = %+v, %v", got, err)
	}

	// Removing the last entry removes the file, the lock and the dirs.
	f2 := NewStateFile(f.Path())
	release, err = f2.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, _ = f2.Load()
	st.remove("ecr.a:1")
	if err := f2.Save(st); err != nil {
		t.Fatal(err)
	}
	release()
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("root not empty after the last entry went: %v", entries)
	}
}

func TestStateFileMalformedIsNotOverwritten(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	os.WriteFile(p, []byte(`{"registries": [`), 0o600)
	_, err := NewStateFile(p).Load()
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("Load = %v, want an error naming the file", err)
	}
	os.WriteFile(p, []byte(`{"version": 99, "registries": []}`), 0o600)
	if _, err := NewStateFile(p).Load(); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Load of a newer format = %v", err)
	}
}

func TestStateLockExcludes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	release, err := NewStateFile(p).Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := NewStateFile(p).Lock(ctx); err == nil || !strings.Contains(err.Error(), "another edgecr join or leave is running") {
		t.Errorf("second Lock = %v", err)
	}
	release()
	release2, err := NewStateFile(p).Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release2()
}

// Release removes the lock file when no state is left; a locker that was
// waiting on the removed file must not think it holds the lock while
// another one locks the new file at the same path: at most one holder at a
// time, whatever the interleaving.
func TestStateLockExcludesAcrossTidy(t *testing.T) {
	p := filepath.Join(t.TempDir(), "var/lib/edgecr/state.json")
	var holders, overlaps atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				release, err := NewStateFile(p).Lock(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if holders.Add(1) != 1 {
					overlaps.Add(1)
				}
				time.Sleep(100 * time.Microsecond)
				holders.Add(-1)
				release() // no state file: removes the lock file and the dirs
			}
		}()
	}
	wg.Wait()
	if n := overlaps.Load(); n > 0 {
		t.Errorf("two lockers held the state lock at once %d times", n)
	}
}
