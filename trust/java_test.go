package trust

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// javaRunner answers keytool like a keystore holding the aliases it has.
type javaRunner struct {
	aliases map[string]bool
	calls   [][]string
}

func (r *javaRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	r.calls = append(r.calls, append([]string{name}, args...))
	if name != "keytool" {
		return nil, nil
	}
	alias := args[slices.Index(args, "-alias")+1]
	switch args[0] {
	case "-list":
		if !r.aliases[alias] {
			return []byte("keytool error: java.lang.Exception: Alias <" + alias + "> does not exist"), errExit
		}
	case "-delete":
		delete(r.aliases, alias)
	}
	return nil, nil
}

var errExit = os.ErrInvalid

func TestCleanJavaRemovesTheAliasFreshLeaves(t *testing.T) {
	root := t.TempDir()
	ks := filepath.Join(root, javaKeystore)
	os.MkdirAll(filepath.Dir(ks), 0o755)
	os.WriteFile(ks, []byte("keystore"), 0o644)
	os.MkdirAll(filepath.Join(root, "etc/default"), 0o755)
	os.WriteFile(filepath.Join(root, javaDefaults), []byte("# comment\nstorepass='s3cret'\n"), 0o644)
	r := &javaRunner{aliases: map[string]bool{"debian:edgecr-dev.pem": true, "debian:other.pem": true}}
	s := &anchorStore{layout: linuxLayouts[Debian], root: root, run: r, log: discard()}
	changed, err := s.cleanJava(context.Background(), "dev")
	if err != nil || !changed {
		t.Fatalf("cleanJava = %v, %v", changed, err)
	}
	if r.aliases["debian:edgecr-dev.pem"] || !r.aliases["debian:other.pem"] {
		t.Fatalf("aliases after clean: %v", r.aliases)
	}
	if last := strings.Join(r.calls[len(r.calls)-1], " "); !strings.Contains(last, "-delete") || !strings.Contains(last, "-storepass s3cret") {
		t.Fatalf("last call %q", last)
	}
	changed, err = s.cleanJava(context.Background(), "dev")
	if err != nil || changed {
		t.Fatalf("second cleanJava = %v, %v; want nothing to do", changed, err)
	}
}
