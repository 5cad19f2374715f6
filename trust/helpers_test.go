package trust_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// debianFixture lays out the parts of a Debian root update-ca-certificates
// works on: distribution CAs listed in ca-certificates.conf, the local anchor
// directory and /etc/ssl/certs. Give it at least two CAs, as on a real
// system: openssl rehash would otherwise hash a one-certificate
// ca-certificates.crt like any other certificate file.
func debianFixture(t *testing.T, root string, systemCAs ...[]byte) {
	t.Helper()
	writeFile(t, filepath.Join(root, "etc/os-release"), "ID=debian\n")
	conf := "# fixture\n"
	for i, ca := range systemCAs {
		name := fmt.Sprintf("test/system-ca-%d.crt", i)
		writeFile(t, filepath.Join(root, "usr/share/ca-certificates", name), string(ca))
		conf += name + "\n"
	}
	writeFile(t, filepath.Join(root, "etc/ca-certificates.conf"), conf)
	mkdir(t, filepath.Join(root, "usr/local/share/ca-certificates"))
	mkdir(t, filepath.Join(root, "etc/ssl/certs"))
}

// fakeUpdateCACertificates emulates Debian's update-ca-certificates for a
// relocated root, closely enough for the store's logic: it refuses to run
// unless every relocation flag points under root (so a test can never reach
// the live /etc), rebuilds ca-certificates.crt from ca-certificates.conf and
// the local anchors, keeps a <name>.pem symlink per anchor, and, like the
// real script, drops the links of removed anchors only with --fresh.
func fakeUpdateCACertificates(root string) func(string, []string) ([]byte, error) {
	return func(name string, args []string) ([]byte, error) {
		if name != "update-ca-certificates" {
			return nil, fmt.Errorf("fake: unexpected command %s", name)
		}
		flags := map[string]string{}
		fresh := false
		for i := 0; i < len(args); i++ {
			switch a := args[i]; a {
			case "--fresh":
				fresh = true
			case "--certsconf", "--certsdir", "--localcertsdir", "--etccertsdir", "--hooksdir":
				if i+1 == len(args) {
					return nil, fmt.Errorf("fake: %s needs a value", a)
				}
				flags[a] = args[i+1]
				i++
			default:
				return nil, fmt.Errorf("fake: unknown argument %q", a)
			}
		}
		for _, f := range []string{"--certsconf", "--certsdir", "--localcertsdir", "--etccertsdir", "--hooksdir"} {
			if v, ok := flags[f]; !ok || !strings.HasPrefix(v, root+string(filepath.Separator)) {
				return nil, fmt.Errorf("fake: refusing to run: %s is %q, not under the test root", f, v)
			}
		}
		etc, local := flags["--etccertsdir"], flags["--localcertsdir"]
		entries, err := os.ReadDir(etc)
		if err != nil {
			return nil, err
		}
		if fresh {
			for _, e := range entries {
				p := filepath.Join(etc, e.Name())
				if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, local) {
					if err := os.Remove(p); err != nil {
						return nil, err
					}
				}
			}
		}
		var bundle bytes.Buffer
		conf, err := os.ReadFile(flags["--certsconf"])
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(conf), "\n") {
			if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(flags["--certsdir"], line))
			if err != nil {
				return nil, err
			}
			bundle.Write(b)
		}
		anchors, _ := filepath.Glob(filepath.Join(local, "*.crt"))
		slices.Sort(anchors)
		for _, a := range anchors {
			b, err := os.ReadFile(a)
			if err != nil {
				return nil, err
			}
			bundle.Write(b)
			link := filepath.Join(etc, strings.TrimSuffix(filepath.Base(a), ".crt")+".pem")
			if _, err := os.Lstat(link); err != nil {
				if err := os.Symlink(a, link); err != nil {
					return nil, err
				}
			}
		}
		return []byte("done.\n"), os.WriteFile(filepath.Join(etc, "ca-certificates.crt"), bundle.Bytes(), 0o644)
	}
}
