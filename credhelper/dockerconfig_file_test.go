package credhelper

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// oddConfig is a hand-edited config.json: unknown keys, CRLF, odd spacing.
var oddConfig = []byte("{ \"proxies\" : { \"default\" : { \"httpProxy\" : \"http://proxy:3128\" } } ,\r\n" +
	"    \"credHelpers\" : {\r\n        \"gcr.io\" : \"gcloud\"\r\n    },\r\n" +
	"  \"x-unknown\": [1, 2.50, {\"a\": null}]   ,\"auths\":{\"x.example\":{\"auth\":\"eDp5\"}}}")

func writeConfig(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func readConfig(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegisterFileJoinLeaveIsByteIdentical(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".docker", "config.json")
	writeConfig(t, path, oddConfig, 0o644)

	ch, err := RegisterFile(path, testHost, testHelper, "pass")
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Changed() || !ch.Existed || len(ch.CreatedDirs) != 0 {
		t.Errorf("Change = %+v, want an edit of an existing file", ch)
	}
	joined := readConfig(t, path)
	if !bytes.Contains(joined, []byte(`"`+testHost+`" : "edgecr"`)) {
		t.Errorf("config after join lacks the helper entry:\n%s", joined)
	}
	if runtime.GOOS != "windows" {
		assertMode(t, path, 0o644) // the user's mode is kept
	}

	changed, err := UnregisterFile(path, roundTripJSON(t, ch))
	if err != nil || !changed {
		t.Fatalf("UnregisterFile = %v, %v", changed, err)
	}
	if got := readConfig(t, path); !bytes.Equal(got, oddConfig) {
		t.Errorf("config after leave:\n%q\nwant the original:\n%q", got, oddConfig)
	}
	if runtime.GOOS != "windows" {
		assertMode(t, path, 0o644)
	}
	if changed, err := UnregisterFile(path, ch); err != nil || changed {
		t.Errorf("second UnregisterFile = %v, %v; want nothing to do", changed, err)
	}
}

func TestRegisterFileMissingFile(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "cfg", "docker") // DOCKER_CONFIG may name a new dir
	path := filepath.Join(dir, "config.json")

	ch, err := RegisterFile(path, testHost, testHelper, "")
	if err != nil {
		t.Fatal(err)
	}
	if ch.Existed {
		t.Error("Change.Existed = true for a missing file")
	}
	if want := []string{filepath.Join(base, "cfg"), dir}; !equalStrings(ch.CreatedDirs, want) {
		t.Errorf("CreatedDirs = %q, want %q", ch.CreatedDirs, want)
	}
	if runtime.GOOS != "windows" {
		assertMode(t, path, 0o600)
		assertMode(t, dir, fs.ModeDir|0o700)
	}
	if want := "{\n\t\"credHelpers\": {\n\t\t\"" + testHost + "\": \"edgecr\"\n\t}\n}\n"; string(readConfig(t, path)) != want {
		t.Errorf("new config.json:\n%s\nwant:\n%s", readConfig(t, path), want)
	}

	if _, err := UnregisterFile(path, roundTripJSON(t, ch)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("config.json that join created is still there after leave: %v", err)
	}
	assertNoEntries(t, base)
}

func TestRegisterFileMissingFileEditedSince(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	ch, err := RegisterFile(path, testHost, testHelper, "")
	if err != nil {
		t.Fatal(err)
	}
	// docker login elsewhere writes to the file in between.
	edited := strings.Replace(string(readConfig(t, path)), "{\n", "{\n\t\"auths\": {\"other.example\": {}},\n", 1)
	writeConfig(t, path, []byte(edited), 0o600)
	if _, err := UnregisterFile(path, ch); err != nil {
		t.Fatal(err)
	}
	if got, want := string(readConfig(t, path)), "{\n\t\"auths\": {\"other.example\": {}}\n}\n"; got != want {
		t.Errorf("after leave:\n%s\nwant the user's part kept:\n%s", got, want)
	}
}

func TestRegisterFileMalformedIsUntouched(t *testing.T) {
	const secret = "c2VjcmV0LXRva2Vu"
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	bad := []byte(`{"auths": {"a.example": {"auth": "` + secret + `"}},}`)
	writeConfig(t, path, bad, 0o600)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}

	_, err := RegisterFile(path, testHost, testHelper, "pass")
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), path) {
		t.Fatalf("RegisterFile on a malformed config = %v, want ErrMalformed naming %s", err, path)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error quotes the config: %v", err)
	}
	_, err = UnregisterFile(path, Change{HostPort: testHost, Helper: testHelper, SetHelper: true})
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("UnregisterFile on a malformed config = %v, want ErrMalformed", err)
	}
	if got := readConfig(t, path); !bytes.Equal(got, bad) {
		t.Errorf("malformed config was rewritten:\n%s", got)
	}
	if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("malformed config was touched: %v, %v", fi.ModTime(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d entries in the config dir, want only config.json", len(entries))
	}
}

func TestRegisterFileFollowsSymlink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks need a privilege on Windows")
	}
	base := t.TempDir()
	target := filepath.Join(base, "dotfiles", "docker.json")
	link := filepath.Join(base, ".docker", "config.json")
	orig := []byte("{\n  \"auths\": {\"a.example\": {}}\n}\n")
	writeConfig(t, target, orig, 0o640)
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../dotfiles/docker.json", link); err != nil {
		t.Fatal(err)
	}
	assertLink := func() {
		t.Helper()
		dest, err := os.Readlink(link)
		if err != nil || dest != "../dotfiles/docker.json" {
			t.Fatalf("config.json is no longer the user's link: %q, %v", dest, err)
		}
	}

	ch, err := RegisterFile(link, testHost, testHelper, "pass")
	if err != nil {
		t.Fatal(err)
	}
	assertLink()
	if !bytes.Contains(readConfig(t, target), []byte(testHost)) {
		t.Errorf("the link's target was not updated:\n%s", readConfig(t, target))
	}
	assertMode(t, target, 0o640)
	if _, err := UnregisterFile(link, ch); err != nil {
		t.Fatal(err)
	}
	assertLink()
	if got := readConfig(t, target); !bytes.Equal(got, orig) {
		t.Errorf("target after leave:\n%s\nwant:\n%s", got, orig)
	}
}

func TestRegisterFileDanglingSymlink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks need a privilege on Windows")
	}
	base := t.TempDir()
	link := filepath.Join(base, "config.json")
	if err := os.Symlink("real.json", link); err != nil {
		t.Fatal(err)
	}
	if _, err := RegisterFile(link, testHost, testHelper, ""); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v", err)
	}
	if !bytes.Contains(readConfig(t, filepath.Join(base, "real.json")), []byte(testHost)) {
		t.Error("the link's missing target was not created")
	}
}

func TestRegisterFileTwiceIsOneEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	writeConfig(t, path, []byte(`{"auths": {"a.example": {}}}`), 0o600)
	first, err := RegisterFile(path, testHost, testHelper, "pass")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	second, err := RegisterFile(path, "https://"+testHost, testHelper, "pass")
	if err != nil {
		t.Fatal(err)
	}
	if !first.Changed() || second.Changed() {
		t.Errorf("Changed: first %v, second %v; want true, false", first.Changed(), second.Changed())
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Error("a second join rewrote an unchanged config.json")
	}
	if n := bytes.Count(readConfig(t, path), []byte(testHost)); n != 1 {
		t.Errorf("%s occurs %d times, want once", testHost, n)
	}
}

// TestRegisterFileKeepsCredsStoreWorking: on a Linux box with pass, a
// config with no auth configured used pass for every registry; after join
// it still does, and only our registry goes to edgecr.
func TestRegisterFileKeepsCredsStoreWorking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	orig := []byte("{\n\t\"auths\": {},\n\t\"currentContext\": \"default\"\n}")
	writeConfig(t, path, orig, 0o600)
	detected := DefaultCredsStore("linux", fakeLookPath("pass", "docker-credential-pass"))

	ch, err := RegisterFile(path, testHost, testHelper, detected)
	if err != nil {
		t.Fatal(err)
	}
	joined := readConfig(t, path)
	if ch.CredsStore != "pass" || storeFor(t, joined, "docker.io", detected) != "pass" || storeFor(t, joined, testHost, detected) != testHelper {
		t.Errorf("after join, Change.CredsStore = %q and config:\n%s", ch.CredsStore, joined)
	}
	if _, err := UnregisterFile(path, ch); err != nil {
		t.Fatal(err)
	}
	if got := readConfig(t, path); !bytes.Equal(got, orig) {
		t.Errorf("after leave:\n%s\nwant:\n%s", got, orig)
	}
}

// TestRewriteConfigRetriesAfterConcurrentWrite: docker login writing
// config.json between our read and our rename must not be lost.
func TestRewriteConfigRetriesAfterConcurrentWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	writeConfig(t, path, []byte(`{"a": 1}`), 0o600)
	calls := 0
	_, err := rewriteConfig(path, options{}, func(old []byte, existed bool) ([]byte, bool, error) {
		calls++
		if calls == 1 {
			writeConfig(t, path, []byte(`{"a": 1, "b": 2}`), 0o600) // the other writer
		}
		return append(bytes.TrimSuffix(old, []byte("}")), []byte(`, "c": 3}`)...), false, nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(readConfig(t, path)), `{"a": 1, "b": 2, "c": 3}`; got != want || calls != 2 {
		t.Errorf("after a concurrent write: %s in %d calls, want %s in 2", got, calls, want)
	}
}

func TestRegisterFileOwner(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() != 0 {
		t.Skip("needs root on unix to give files away (edgecr join under sudo)")
	}
	const uid, gid = 4242, 4343
	home := t.TempDir()
	path := filepath.Join(home, ".docker", "config.json")
	if _, err := RegisterFile(path, testHost, testHelper, "", WithOwner(uid, gid, home)); err != nil {
		t.Fatal(err)
	}
	assertOwner(t, path, uid, gid)
	assertOwner(t, filepath.Dir(path), uid, gid)

	// An existing file keeps its owner, whoever runs the rewrite: root's
	// stays root's (one of another user is refused, see
	// TestOwnerConfinedToHome).
	if err := os.Chown(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := RegisterFile(path, "other.example:1", testHelper, "", WithOwner(uid, gid, home)); err != nil {
		t.Fatal(err)
	}
	assertOwner(t, path, 0, 0)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// WithIntent hands the caller the Change before the write, and Applied
// tells afterwards whether it was made: a caller that recorded it and
// crashed right after the write still knows the entry as its own, and
// UnregisterFile gives config.json (and the directory made for it) back.
func TestRegisterFileIntentAndApplied(t *testing.T) {
	for _, existing := range []string{"", "{\n  \"auths\": {\"x\": {}}\n}\n"} {
		home := t.TempDir()
		path := filepath.Join(home, ".docker", "config.json")
		if existing != "" {
			writeConfig(t, path, []byte(existing), 0o600)
		}
		var intents []Change
		ch, err := RegisterFile(path, testHost, testHelper, "desktop", WithIntent(func(c Change) error {
			if ok, err := AppliedFile(path, c); err != nil || ok {
				t.Errorf("AppliedFile before the write = %v, %v", ok, err)
			}
			intents = append(intents, c)
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		if len(intents) != 1 || !reflect.DeepEqual(intents[0], ch) {
			t.Fatalf("intents %+v, want one, the Change %+v", intents, ch)
		}
		if existing == "" && !equalStrings(ch.CreatedDirs, []string{filepath.Dir(path)}) {
			t.Errorf("CreatedDirs = %v", ch.CreatedDirs)
		}
		// The crash: only the intent survives. It is applied, and undoes.
		if ok, err := AppliedFile(path, intents[0]); err != nil || !ok {
			t.Errorf("AppliedFile after the write = %v, %v", ok, err)
		}
		if _, err := UnregisterFile(path, intents[0]); err != nil {
			t.Fatal(err)
		}
		if existing == "" {
			if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
				t.Errorf("the directory made for config.json stays: %v", err)
			}
		} else if got := string(readConfig(t, path)); got != existing {
			t.Errorf("config.json = %q, want %q", got, existing)
		}
	}

	// Edited since the write (docker login rewrote it): still ours.
	cfg := []byte(`{"auths": {}}`)
	out, ch, err := Register(cfg, testHost, testHelper, "")
	if err != nil {
		t.Fatal(err)
	}
	if !Applied(append(out, ' '), ch) || Applied(cfg, ch) || Applied(out, Change{}) {
		t.Error("Applied: wrong answer")
	}

	// A refused intent writes nothing.
	home := t.TempDir()
	path := filepath.Join(home, ".docker", "config.json")
	veto := errors.New("veto")
	if _, err := RegisterFile(path, testHost, testHelper, "", WithIntent(func(Change) error { return veto })); !errors.Is(err, veto) {
		t.Fatalf("RegisterFile with a refused intent = %v", err)
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Errorf("a refused intent left %v", entries)
	}
}
