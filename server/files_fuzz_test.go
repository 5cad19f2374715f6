package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for what edgecrd reads from the network and from the files
// of its data dir an operator may edit (issue 14). CI runs each briefly
// (.ci/run); docs/contributing.md has the line that runs them for longer.

// POST /edgecr/v1/join with any body: a clear 4xx, never a 5xx or a panic,
// and a join only for the one valid token.
func FuzzJoinRequest(f *testing.F) {
	st, err := Ensure(f.TempDir(), testOptions("fuzz"), time.Now())
	if err != nil {
		f.Fatal(err)
	}
	_, token, err := st.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePull}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	authn, err := NewAuthenticator(st.Identities())
	if err != nil {
		f.Fatal(err)
	}
	j := &joinAPI{state: st, auth: authn, limiter: newFailureLimiter(time.Nanosecond, 1<<30),
		metrics: newMetrics(nil), log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	valid, _ := json.Marshal(JoinRequest{Token: token, Name: "node"})
	for _, s := range []string{string(valid), `{"token":"edgecr1.x.y.z","name":"n"}`, `{"token":` + "\"" + token + "\"" + `,"name":"\u001b[31m"}`, `[]`, `{"token":1}`, ``, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, APIJoin, bytes.NewReader(body))
		r.RemoteAddr = "192.0.2.1:1234"
		j.join(w, r)
		switch w.Code {
		case http.StatusOK:
			var req JoinRequest
			if json.NewDecoder(bytes.NewReader(body)).Decode(&req) != nil || strings.TrimSpace(req.Token) != token {
				t.Fatalf("joined with %q", body)
			}
		case http.StatusBadRequest, http.StatusUnauthorized:
			var e APIError
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%d without a JSON error (%v): %q", w.Code, err, w.Body)
			}
		default:
			t.Fatalf("body %q: status %d %q", body, w.Code, w.Body)
		}
	})
}

// identities.json: what parseRecords accepts survives a write and a read
// unchanged, and nothing it accepts holds an identity it could not check.
func FuzzParseRecords(f *testing.F) {
	h := HashSecret("s")
	f.Add([]byte(`{"identities":[{"id":"admin","name":"admin","kind":"admin","role":"admin","secretHash":"` + h + `","created":"2026-01-01T00:00:00Z"}],"tokens":[{"id":"t1","secretHash":"` + h + `","role":"push","uses":2,"used":1,"expires":"2026-01-02T00:00:00Z"}]}`))
	f.Add([]byte(`{"identities":[null]}`))
	f.Add([]byte(`{"identities":[{"id":"x","secretHash":"sha256:zz","role":"root"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecords("identities.json", b)
		if err != nil {
			if !strings.Contains(err.Error(), "identities.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, i := range r.Identities {
			if _, err := decodeHash(i.SecretHash); err != nil {
				t.Fatalf("accepted identity %q with hash %q", i.ID, i.SecretHash)
			}
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseRecords("identities.json", out)
		if err != nil {
			t.Fatalf("re-reading what was written: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalise(t, r), normalise(t, again)) {
			t.Fatalf("round trip changed the records:\n%s", out)
		}
	})
}

func normalise(t *testing.T, r *Records) string {
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// device.json: what parseDevice accepts is a device edgecrd can serve.
func FuzzParseDevice(f *testing.F) {
	f.Add([]byte(`{"name":"box","host":"ecr.box.internal","port":31001,"ips":["192.168.1.2"],"quotaBytes":0}`))
	f.Add([]byte(`{"host":"ECR..x","port":0}`))
	f.Add([]byte(`{"host":"a.b","port":70000,"ips":["::1","x"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &State{Dir: "data"}
		if err := s.parseDevice(b); err != nil {
			if !strings.Contains(err.Error(), filepath.Join("data", deviceFile)) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		d := s.Device
		if validDNSName(d.Host) != nil || d.Port < 1 || d.Port > 65535 || d.QuotaBytes < 0 {
			t.Fatalf("accepted %+v", d)
		}
	})
}

// lastseen.json: any content reads as a map (a damaged file loses only
// "last seen" times), never an error or a panic.
func FuzzReadLastSeen(f *testing.F) {
	f.Add([]byte(`{"c-1":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"c-1":"yesterday"}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "lastseen.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		m, _, err := (&State{Dir: dir}).readLastSeen()
		if err != nil || m == nil {
			t.Fatalf("readLastSeen: %v, %v", m, err)
		}
	})
}

// --gc-schedule: an accepted schedule prints as itself, parses again to
// the same, and its next run is after now (or never, when off).
func FuzzParseGCSchedule(f *testing.F) {
	for _, s := range []string{"off", "daily@03:00", "weekly@sun@03:00", "every@6h", "every@0s", "daily@24:00", "weekly@x@1:1", "@@"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		g, err := ParseGCSchedule(spec)
		if err != nil {
			return
		}
		again, err := ParseGCSchedule(g.String())
		if err != nil || again.String() != g.String() {
			t.Fatalf("%q printed as %q, which parses to %q, %v", spec, g.String(), again.String(), err)
		}
		next := g.Next(now)
		if g.Off() != next.IsZero() || (!g.Off() && !next.After(now)) {
			t.Fatalf("%q: next run after %s is %s", spec, now, next)
		}
	})
}

// Manifests come from the network: the collector's reading of one never
// panics and every reference it returns is a valid digest.
func FuzzParseManifestRefs(f *testing.F) {
	f.Add([]byte(`{"config":{"digest":"sha256:` + strings.Repeat("a", 64) + `"},"layers":[{"digest":"sha256:` + strings.Repeat("b", 64) + `"}]}`))
	f.Add([]byte(`{"manifests":[{"digest":"sha512:x"}],"subject":{"digest":""}}`))
	f.Add([]byte(`{"fsLayers":[{"blobSum":"sha256:` + strings.Repeat("c", 64) + `"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		refs, err := parseManifestRefs(b)
		if err != nil {
			return
		}
		all := append(append([]digest{}, refs.blobs...), refs.manifests...)
		if refs.subject != "" {
			all = append(all, refs.subject)
		}
		for _, d := range all {
			if _, err := parseDigest(string(d)); err != nil {
				t.Fatalf("reference %q: %v", d, err)
			}
		}
	})
}

// Roles come from identities.json and the UI's token form.
func FuzzParseRole(f *testing.F) {
	for _, s := range []string{"pull", "push", "admin", "Admin", " push", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRole(s)
		if err != nil {
			return
		}
		if again, err := ParseRole(string(r)); err != nil || again != r {
			t.Fatalf("%q parsed as %q, which parses as %q, %v", s, r, again, err)
		}
	})
}
