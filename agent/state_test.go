package agent

import (
	"context"
	"encoding/json"
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
		if err != nil || fi.Mode().Perm() != 0o644 {
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

// The state holds no secret, so that anyone may read it (edgecr status runs
// unprivileged): a pending secret lives in its own 0600 file, which exists
// only while one is pending. A state an earlier edgecr wrote with the
// secret inside is read, and the next save moves the secret out.
func TestStateKeepsSecretsOutOfTheStateFile(t *testing.T) {
	const secret = "s3cr3t-password-of-the-client"
	root := t.TempDir()
	f := NewStateFile(filepath.Join(root, "var/lib/edgecr/state.json"))
	release, err := f.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	st, _ := f.Load()
	st.put(&Entry{Registry: "ecr.a:1", Pin: "p", PendingSecret: secret})
	st.put(&Entry{Registry: "ecr.b:1", Pin: "q"})
	if err := f.Save(st); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(f.Path())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), secret) || strings.Contains(string(data), "pendingSecret") {
		t.Errorf("the state file holds the secret:\n%s", data)
	}
	if runtime.GOOS != "windows" {
		for p, want := range map[string]os.FileMode{
			f.Path():                       0o644,
			f.SecretsPath():                0o600,
			filepath.Join(root, "var"):     0o755,
			filepath.Join(root, "var/lib"): 0o755,
			filepath.Dir(f.Path()):         0o755,
		} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode().Perm(), err, want)
			}
		}
	}
	got, err := NewStateFile(f.Path()).Load()
	if err != nil || got.Find("ecr.a:1").PendingSecret != secret || got.Find("ecr.b:1").PendingSecret != "" {
		t.Fatalf("reloaded = %+v, %v", got, err)
	}

	// Cleared: the secrets file goes.
	got.Find("ecr.a:1").PendingSecret = ""
	f2 := NewStateFile(f.Path())
	f2.Load()
	if err := f2.Save(got); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.SecretsPath()); !os.IsNotExist(err) {
		t.Errorf("the secrets file stays once nothing is pending: %v", err)
	}

	// An earlier edgecr's state, 0600 in a 0700 directory, with the secret.
	legacy := `{"version": 1, "createdDirs": [` + strings.Join([]string{
		jsonString(filepath.Join(root, "var")), jsonString(filepath.Join(root, "var/lib")), jsonString(filepath.Dir(f.Path())),
	}, ", ") + `], "registries": [{"registry": "ecr.a:1", "pin": "p", "pendingSecret": "` + secret + `"}]}`
	os.WriteFile(f.Path(), []byte(legacy), 0o600)
	os.Chmod(filepath.Dir(f.Path()), 0o700)
	f3 := NewStateFile(f.Path())
	st, err = f3.Load()
	if err != nil || st.Find("ecr.a:1").PendingSecret != secret {
		t.Fatalf("legacy state = %+v, %v", st, err)
	}
	if err := f3.Save(st); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(f.Path()); strings.Contains(string(data), secret) {
		t.Errorf("the secret stays in the state file after a save:\n%s", data)
	}
	if st, _ := NewStateFile(f.Path()).Load(); st.Find("ecr.a:1").PendingSecret != secret {
		t.Error("the legacy secret was lost")
	}
	if runtime.GOOS != "windows" {
		if fi, _ := os.Stat(filepath.Dir(f.Path())); fi.Mode().Perm() != 0o755 {
			t.Errorf("the state directory stays %v", fi.Mode().Perm())
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
