package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Fuzz targets for what edgecr reads from the user (tokens, device URLs),
// from the device (its CA, manifests) and from its own state file, which
// a user may edit (issue 14).

// A token the agent accepts is exactly what it was given, and its printed
// form never holds the secret.
func FuzzAgentParseToken(f *testing.F) {
	f.Add("edgecr1." + strings.Repeat("a", 64) + "." + strings.Repeat("0", 16) + "." + strings.Repeat("A", 43))
	f.Add(" edgecr1..x.y ")
	f.Add("edgecr1." + strings.Repeat("A", 64) + "." + strings.Repeat("0", 16) + "." + strings.Repeat("-", 43))
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		if tok.reveal() != strings.TrimSpace(s) {
			t.Fatalf("%q parsed as %q", s, tok.reveal())
		}
		if strings.Contains(tok.String(), tok.secret) {
			t.Fatalf("String() shows the secret: %s", tok)
		}
	})
}

// A device URL the agent accepts is https://HOST:PORT and parses to itself.
func FuzzParseDeviceURL(f *testing.F) {
	for _, s := range []string{"box.local", "https://192.168.1.2:31001/", "https://[::1]:1", "http://x", "https://u:p@x", "https://x:0", "https://x/p?q"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ParseDeviceURL(raw)
		if err != nil {
			return
		}
		if u.Scheme != "https" || u.Port() == "" || u.Path != "" || u.User != nil {
			t.Fatalf("%q parsed as %v", raw, u)
		}
		again, err := ParseDeviceURL(u.String())
		if err != nil || again.String() != u.String() {
			t.Fatalf("%q parsed as %v, which parses as %v, %v", raw, u, again, err)
		}
	})
}

// The CA a device serves: what ParseCAPEM accepts, its canonical PEM
// parses to the same certificate.
func FuzzParseCAPEM(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, b []byte) {
		der, canonical, err := ParseCAPEM(b)
		if err != nil {
			return
		}
		der2, canonical2, err := ParseCAPEM(canonical)
		if err != nil || !bytes.Equal(der, der2) || !bytes.Equal(canonical, canonical2) {
			t.Fatalf("canonical PEM does not parse to the same: %v", err)
		}
	})
}

// Manifests come from the registry: any bytes give a size or an error,
// and a size is never less than the manifest itself (negative layer sizes
// once made it so).
func FuzzParseManifestSize(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"config":{"size":10,"digest":"sha256:` + strings.Repeat("a", 64) + `"},"layers":[{"size":5,"digest":"sha256:` + strings.Repeat("b", 64) + `"}]}`))
	f.Add([]byte(`{"layers":[{"size":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := parseManifestSize(b)
		if err == nil && ms.total < int64(len(b)) {
			t.Fatalf("total %d is less than the manifest's own %d bytes", ms.total, len(b))
		}
	})
}

// The state file: whatever Load accepts, Save writes and Load reads back
// the same; what it refuses is named in the error and left as it was.
func FuzzStateLoad(f *testing.F) {
	f.Add([]byte(`{"version":1,"registries":[{"registry":"ecr.box.internal:31001","host":"ecr.box.internal","port":31001,"steps":{"bootstrap":"done"}}]}`))
	f.Add([]byte(`{"version":99}`))
	f.Add([]byte(`{"registries":[null]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "state.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		sf := NewStateFile(p)
		st, err := sf.Load()
		if err != nil {
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("error does not name the file: %v", err)
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, b) {
				t.Fatal("a state file that did not load was changed")
			}
			return
		}
		if err := sf.Save(st); err != nil {
			t.Fatalf("saving what was loaded: %v", err)
		}
		again, err := NewStateFile(p).Load()
		if err != nil {
			t.Fatalf("loading what was saved: %v", err)
		}
		// An empty list and none are the same state.
		for _, s := range []*State{st, again} {
			s.CreatedDirs = nil
			if len(s.Registries) == 0 {
				s.Registries = nil
			}
		}
		if !reflect.DeepEqual(st, again) {
			t.Fatalf("round trip changed the state:\n%+v\n%+v", st, again)
		}
	})
}
