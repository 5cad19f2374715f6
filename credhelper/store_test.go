package credhelper

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"

	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/google/go-cmp/cmp"
)

const (
	testHost   = "ecr.dev1.example:31001"
	testSecret = "s3cr3t-Zq8vKx2"
)

func newTestStore(t *testing.T, opts ...Option) *Store {
	t.Helper()
	return NewStore(filepath.Join(t.TempDir(), "edgecr", "credentials.json"), opts...)
}

func mustAdd(t *testing.T, s *Store, url, user, secret string) {
	t.Helper()
	if err := s.Add(&credentials.Credentials{ServerURL: url, Username: user, Secret: secret}); err != nil {
		t.Fatalf("Add(%s): %v", url, err)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s := newTestStore(t)
	mustAdd(t, s, "https://"+testHost, "client-1", testSecret)
	mustAdd(t, s, "other.example:5000", "bob", "pw2")

	user, secret, err := s.Get(testHost)
	if err != nil || user != "client-1" || secret != testSecret {
		t.Fatalf("Get = %q, %q, %v; want client-1, the secret, nil", user, secret, err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{testHost: "client-1", "other.example:5000": "bob"}, list); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}

	mustAdd(t, s, testHost, "client-2", "rotated")
	if user, secret, _ := s.Get(testHost); user != "client-2" || secret != "rotated" {
		t.Errorf("after a second Add, Get = %q, %q; want the new credential", user, secret)
	}

	if err := s.Delete("https://" + testHost + "/"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(testHost); !credentials.IsErrCredentialsNotFound(err) {
		t.Errorf("Get after Delete: %v, want not found", err)
	}
	if _, _, err := s.Get("other.example:5000"); err != nil {
		t.Errorf("Delete removed another registry: %v", err)
	}
}

func TestStoreGetMatchesOnlyItsHostPort(t *testing.T) {
	s := newTestStore(t)
	mustAdd(t, s, testHost, "client-1", testSecret)

	for _, url := range []string{
		"ecr.dev1.example:31001",
		"ecr.dev1.example:31001/library/alpine", // go-containerregistry asks this first
		"https://ecr.dev1.example:31001",
		"https://ecr.dev1.example:31001/v2/",
		"http://ecr.dev1.example:31001",
		"ECR.DEV1.EXAMPLE:31001",
	} {
		if user, _, err := s.Get(url); err != nil || user != "client-1" {
			t.Errorf("Get(%q) = %q, %v; want the entry", url, user, err)
		}
	}
	for _, url := range []string{
		"ecr.dev1.example",
		"ecr.dev1.example:3100",
		"ecr.dev1.example:310011",
		"ecr.dev1.example:443",
		"https://ecr.dev1.example",
		"xecr.dev1.example:31001",
		"ecr.dev1.example.evil:31001",
		"dev1.example:31001",
		"evil.example/ecr.dev1.example:31001",
		"not a url",
	} {
		_, _, err := s.Get(url)
		if !credentials.IsErrCredentialsNotFound(err) {
			t.Errorf("Get(%q) = %v, want not found", url, err)
		}
	}
}

func TestStoreGetNotFound(t *testing.T) {
	dir := t.TempDir()
	s := NewStore(filepath.Join(dir, "missing", "credentials.json"))
	_, _, err := s.Get(testHost)
	if err == nil || err.Error() != "credentials not found in native keychain" {
		t.Fatalf("Get on a missing file = %v, want exactly the protocol's not-found text", err)
	}
	if !credentials.IsErrCredentialsNotFound(err) {
		t.Errorf("not-found error is not credentials' own type: %T", err)
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("List on a missing file = %v, %v; want empty", list, err)
	}
	assertNoEntries(t, dir)
}

func TestStoreDeleteAbsentIsNotAnError(t *testing.T) {
	dir := t.TempDir()
	s := NewStore(filepath.Join(dir, "edgecr", "credentials.json"))
	// docker logout erases twice; edgecr leave may run again.
	for i := range 2 {
		if err := s.Delete(testHost); err != nil {
			t.Fatalf("Delete #%d on a missing file: %v", i+1, err)
		}
	}
	assertNoEntries(t, dir)

	mustAdd(t, s, testHost, "client-1", testSecret)
	for i := range 2 {
		if err := s.Delete("https://" + testHost); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if err := s.Delete("::::"); err != nil {
		t.Errorf("Delete of an unparsable URL: %v, want nil", err)
	}
}

func assertNoEntries(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%s holds %d entries (first %s), want none created", dir, len(entries), entries[0].Name())
	}
}

func TestStoreAddValidates(t *testing.T) {
	s := newTestStore(t)
	for _, c := range []*credentials.Credentials{
		nil,
		{ServerURL: "", Username: "u", Secret: testSecret},
		{ServerURL: testHost, Username: "", Secret: testSecret},
		{ServerURL: "https://", Username: "u", Secret: testSecret},
	} {
		err := s.Add(c)
		if err == nil {
			t.Errorf("Add(%+v) succeeded, want an error", c)
			continue
		}
		if strings.Contains(err.Error(), testSecret) {
			t.Errorf("Add error quotes the secret: %v", err)
		}
	}
}

func TestStoreFileModes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix permission bits")
	}
	s := newTestStore(t)
	mustAdd(t, s, testHost, "client-1", testSecret)
	assertMode(t, s.Path(), 0o600)
	assertMode(t, filepath.Dir(s.Path()), fs.ModeDir|0o700)
	assertMode(t, s.Path()+".lock", 0o600)

	// A file that someone loosened is tightened on the next write.
	if err := os.Chmod(s.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, "other.example:1", "u", "p")
	assertMode(t, s.Path(), 0o600)
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (fs.ModeDir | fs.ModePerm); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

func TestStoreSkipsUnchangedWrite(t *testing.T) {
	s := newTestStore(t)
	mustAdd(t, s, testHost, "client-1", testSecret)
	before, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, "https://"+testHost+"/", "client-1", testSecret)
	if err := s.Delete("absent.example:1"); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("an Add that changed nothing replaced the file")
	}
}

func TestStoreMalformedFile(t *testing.T) {
	tests := map[string]string{
		"truncated":      `{"version": 1, "registries": {"` + testHost + `": {"username": "u", "secret": "` + testSecret,
		"bad escape":     `{"registries": {"h:1": {"username": "u", "secret": "ab\q` + testSecret + `"}}}`,
		"wrong type":     `{"registries": {"h:1": {"username": "u", "secret": 12345}}}`,
		"trailing":       `{"registries": {}} ` + testSecret,
		"not an object":  `["` + testSecret + `"]`,
		"newer version":  `{"version": 2, "registries": {}}`,
		"registries arr": `{"registries": ["` + testSecret + `"]}`,
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			s := newTestStore(t)
			if err := os.MkdirAll(filepath.Dir(s.Path()), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.Path(), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			check := func(op string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s on a malformed file succeeded", op)
				}
				if !strings.Contains(err.Error(), s.Path()) {
					t.Errorf("%s error does not name the file: %v", op, err)
				}
				// encoding/json's own messages quote the offending character or number.
				if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "12345") || strings.Contains(err.Error(), "invalid character") {
					t.Errorf("%s error quotes the file's content: %v", op, err)
				}
			}
			_, _, err := s.Get(testHost)
			check("Get", err)
			_, err = s.List()
			check("List", err)
			check("Add", s.Add(&credentials.Credentials{ServerURL: testHost, Username: "u", Secret: "new-" + testSecret}))
			check("Delete", s.Delete(testHost))

			got, err := os.ReadFile(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != content {
				t.Errorf("malformed file was rewritten:\n%s", got)
			}
		})
	}
}

func TestStoreEmptyFileIsEmptyStore(t *testing.T) {
	s := newTestStore(t)
	if err := os.MkdirAll(filepath.Dir(s.Path()), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(testHost); !credentials.IsErrCredentialsNotFound(err) {
		t.Errorf("Get on an empty file = %v, want not found", err)
	}
	mustAdd(t, s, testHost, "client-1", testSecret)
	if _, secret, err := s.Get(testHost); err != nil || secret != testSecret {
		t.Errorf("Get after Add = %q, %v", secret, err)
	}
}

func TestStoreNoPath(t *testing.T) {
	s := NewStore("")
	errs := []error{s.Add(&credentials.Credentials{ServerURL: testHost, Username: "u", Secret: testSecret}), s.Delete(testHost)}
	_, _, err := s.Get(testHost)
	errs = append(errs, err)
	_, err = s.List()
	errs = append(errs, err)
	for i, err := range errs {
		if !errors.Is(err, errNoPath) || !strings.Contains(err.Error(), "EDGECR_CONFIG_DIR") {
			t.Errorf("operation %d without a path: %v, want a hint at EDGECR_CONFIG_DIR", i, err)
		}
	}
}

func TestStoreFollowsSymlink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks need a privilege on Windows")
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "dotfiles", "edgecr-credentials.json")
	link := filepath.Join(dir, "config", "credentials.json")
	for _, d := range []string{filepath.Dir(target), filepath.Dir(link)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../dotfiles/edgecr-credentials.json", link); err != nil {
		t.Fatal(err)
	}
	s := NewStore(link)
	mustAdd(t, s, testHost, "client-1", testSecret)
	fi, err := os.Lstat(link)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v, %v", fi.Mode(), err)
	}
	data, err := os.ReadFile(target)
	if err != nil || !strings.Contains(string(data), testHost) {
		t.Fatalf("the link's target was not written: %q, %v", data, err)
	}
	if _, secret, err := s.Get(testHost); err != nil || secret != testSecret {
		t.Errorf("Get through the link = %q, %v", secret, err)
	}
}

func TestStoreConcurrentAdds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A Store per goroutine: each takes the lock through its own open file.
			s := NewStore(path)
			errs <- s.Add(&credentials.Credentials{ServerURL: hostN(i), Username: "u", Secret: "p"})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, err := NewStore(path).List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Errorf("after %d concurrent Adds the store holds %d entries: lost updates", n, len(list))
	}
}

func hostN(i int) string { return "h" + string(rune('a'+i)) + ".example:31001" }

func TestStoreOwner(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file owners are unix uids")
	}
	testenv.NeedRoot(t, "giving files away, as edgecr join does under sudo")
	const uid, gid = 4242, 4343
	home := t.TempDir()
	path := filepath.Join(home, ".config", "edgecr", "credentials.json")
	s := NewStore(path, WithOwner(uid, gid, home))
	mustAdd(t, s, testHost, "client-1", testSecret)
	for _, p := range []string{path, path + ".lock", filepath.Dir(path), filepath.Join(home, ".config")} {
		assertOwner(t, p, uid, gid)
	}
	assertOwner(t, home, 0, 0) // existed: not ours to change

	// root rewriting the user's file without WithOwner leaves it the user's.
	mustAdd(t, NewStore(path), "other.example:1", "u", "p")
	assertOwner(t, path, uid, gid)
}
