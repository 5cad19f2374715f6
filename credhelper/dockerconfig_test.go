package credhelper

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	testHelper       = "edgecr"
	testDefaultStore = "secretservice"
)

// registerInputs are the configs in testdata/register/*.json: Docker
// Desktop's, a hand-edited one with unknown keys, CRLF and odd spacing, a
// compact one, an empty file, and so on.
func registerInputs(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "register", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no inputs in testdata/register: %v", err)
	}
	in := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		in[strings.TrimSuffix(filepath.Base(p), ".json")] = b
	}
	return in
}

// TestRegisterGolden pins the exact bytes Register writes, so that a
// reviewer sees what a user's config.json will look like. -update rewrites.
func TestRegisterGolden(t *testing.T) {
	for name, in := range registerInputs(t) {
		t.Run(name, func(t *testing.T) {
			out, _, err := Register(in, testHost, testHelper, testDefaultStore)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "register", name+".golden")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), string(out)); diff != "" {
				t.Errorf("Register output differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestRegisterUnregisterIsByteIdentical(t *testing.T) {
	for name, in := range registerInputs(t) {
		t.Run(name, func(t *testing.T) {
			out, ch, err := Register(in, testHost, testHelper, testDefaultStore)
			if err != nil {
				t.Fatal(err)
			}
			if !ch.Changed() {
				t.Fatal("Register changed nothing")
			}
			// The Change survives the agent's state file.
			ch = roundTripJSON(t, ch)
			back, err := Unregister(out, ch)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, in) {
				t.Errorf("Unregister(Register(x)) != x:\n got %q\nwant %q", back, in)
			}
		})
	}
}

func roundTripJSON(t *testing.T, ch Change) Change {
	t.Helper()
	b, err := json.Marshal(ch)
	if err != nil {
		t.Fatal(err)
	}
	var out Change
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRegisterKeepsEverythingElse(t *testing.T) {
	for name, in := range registerInputs(t) {
		t.Run(name, func(t *testing.T) {
			out, _, err := Register(in, testHost, testHelper, testDefaultStore)
			if err != nil {
				t.Fatal(err)
			}
			inKeys, outKeys := topKeys(t, in), topKeys(t, out)
			if len(outKeys) < len(inKeys) || !slices.Equal(inKeys, outKeys[:len(inKeys)]) {
				t.Errorf("top-level keys went from %q to %q, want the same order with new keys last", inKeys, outKeys)
			}
			inVals, outVals := topValues(t, in), topValues(t, out)
			for k, v := range inVals {
				if k == keyCredHelpers || k == keyCredsStore {
					continue
				}
				if !bytes.Equal(outVals[k], v) {
					t.Errorf("value of %q changed from %s to %s", k, v, outVals[k])
				}
			}
			var helpers struct {
				CredHelpers map[string]string `json:"credHelpers"`
			}
			if err := json.Unmarshal(out, &helpers); err != nil {
				t.Fatal(err)
			}
			if helpers.CredHelpers[testHost] != testHelper {
				t.Errorf("credHelpers[%s] = %q, want %q", testHost, helpers.CredHelpers[testHost], testHelper)
			}
			for h, v := range credHelpersOf(t, in) {
				if h != testHost && helpers.CredHelpers[h] != v {
					t.Errorf("credHelpers[%s] went from %q to %q", h, v, helpers.CredHelpers[h])
				}
			}
		})
	}
}

// topKeys lists the top-level keys in order, read with encoding/json's
// tokenizer rather than the package's own scanner.
func topKeys(t *testing.T, doc []byte) []string {
	t.Helper()
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func topValues(t *testing.T, doc []byte) map[string]json.RawMessage {
	t.Helper()
	m := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(doc)) == 0 {
		return m
	}
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func credHelpersOf(t *testing.T, doc []byte) map[string]string {
	t.Helper()
	v, err := parseDockerConfig(doc)
	if err != nil {
		t.Fatal(err)
	}
	return v.CredHelpers
}

// storeFor is the credential store the Docker CLI uses for registry with
// config doc on a machine whose default store is detected (see
// cli/config.LoadDefaultConfigFile and ConfigFile.GetCredentialsStore);
// "" is the file itself.
func storeFor(t *testing.T, doc []byte, registry, detected string) string {
	t.Helper()
	v, err := parseDockerConfig(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !v.containsAuth() {
		v.CredsStore = detected
	}
	if h, ok := v.CredHelpers[registry]; ok {
		return h
	}
	return v.CredsStore
}

// TestRegisterKeepsOtherRegistriesOnTheirStore is Docker's pitfall: a
// config with credHelpers but no credsStore and no auths stops the CLI from
// using the platform's default store for every other registry.
func TestRegisterKeepsOtherRegistriesOnTheirStore(t *testing.T) {
	for name, in := range registerInputs(t) {
		for _, detected := range []string{"", "pass", "osxkeychain"} {
			out, ch, err := Register(in, testHost, testHelper, detected)
			if err != nil {
				t.Fatal(err)
			}
			for _, reg := range []string{"other.example", "gcr.io", "registry.example.com", "x.example"} {
				if before, after := storeFor(t, in, reg, detected), storeFor(t, out, reg, detected); before != after {
					t.Errorf("%s, default store %q: %s used store %q before Register and %q after", name, detected, reg, before, after)
				}
			}
			if got := storeFor(t, out, testHost, detected); got != testHelper {
				t.Errorf("%s: %s uses %q after Register, want %q", name, testHost, got, testHelper)
			}
			if ch.CredsStore != "" && ch.CredsStore != detected {
				t.Errorf("%s: Change.CredsStore = %q, want %q", name, ch.CredsStore, detected)
			}
		}
	}
}

func TestRegisterCredsStoreOnlyWhenDockerWouldDetectIt(t *testing.T) {
	tests := []struct {
		in   string
		want string // Change.CredsStore
	}{
		{``, "pass"},
		{`{}`, "pass"},
		{`{"auths": {}}`, "pass"},
		{`{"auths": null, "credsStore": ""}`, "pass"},
		{`{"credHelpers": {}}`, "pass"},
		{`{"auths": {"a.example": {}}}`, ""},
		{`{"credsStore": "desktop"}`, ""},
		{`{"credHelpers": {"gcr.io": "gcloud"}}`, ""},
		{`{"credHelpers": {"` + testHost + `": "edgecr"}}`, ""},
	}
	for _, tt := range tests {
		out, ch, err := Register([]byte(tt.in), testHost, testHelper, "pass")
		if err != nil {
			t.Fatalf("Register(%s): %v", tt.in, err)
		}
		if ch.CredsStore != tt.want {
			t.Errorf("Register(%s).CredsStore = %q, want %q; config:\n%s", tt.in, ch.CredsStore, tt.want, out)
		}
		if v, _ := parseDockerConfig(out); tt.want != "" && v.CredsStore != tt.want {
			t.Errorf("Register(%s) wrote credsStore %q, want %q", tt.in, v.CredsStore, tt.want)
		}
	}
}

func TestRegisterTwiceIsOneEntry(t *testing.T) {
	for name, in := range registerInputs(t) {
		once, _, err := Register(in, testHost, testHelper, testDefaultStore)
		if err != nil {
			t.Fatal(err)
		}
		for _, host := range []string{testHost, "https://" + testHost, testHost + "/repo"} {
			twice, ch, err := Register(once, host, testHelper, testDefaultStore)
			if err != nil {
				t.Fatal(err)
			}
			if ch.Changed() || !bytes.Equal(once, twice) {
				t.Errorf("%s: registering %s again changed the config:\n%s", name, host, twice)
			}
		}
		if n := bytes.Count(once, []byte(`"`+testHost+`"`)); n != 1 {
			t.Errorf("%s: %s occurs %d times, want once", name, testHost, n)
		}
	}
}

func TestRegisterMalformed(t *testing.T) {
	const secret = "c2VjcmV0LXRva2Vu"
	tests := map[string]string{
		"truncated":              `{"auths": {"a": {"auth": "` + secret,
		"trailing comma":         `{"auths": {"a": {"auth": "` + secret + `"}},}`,
		"bad literal":            `{"auths": {"a": {"auth": "` + secret + `"}}, "x": tru}`,
		"trailing value":         `{"auths": {}} {"` + secret + `": 1}`,
		"array":                  `["` + secret + `"]`,
		"null":                   `null`,
		"string":                 `"` + secret + `"`,
		"bom":                    "\xef\xbb\xbf{}",
		"comment":                "{\n// " + secret + "\n}",
		"credHelpers array":      `{"credHelpers": ["` + secret + `"]}`,
		"credHelpers number":     `{"credHelpers": {"a.example": 12345}}`,
		"credsStore number":      `{"credsStore": 12345}`,
		"auths entry string":     `{"auths": {"a.example": "` + secret + `"}}`,
		"duplicate credHelpers":  `{"credHelpers": {}, "credHelpers": {"gcr.io": "gcloud"}}`,
		"duplicate host":         `{"credHelpers": {"` + testHost + `": "a", "` + testHost + `": "b"}}`,
		"duplicate credsStore":   `{"credsStore": "", "credsStore": ""}`,
		"single quotes":          `{'auths': {}}`,
		"unquoted key":           `{auths: {}}`,
		"unterminated in object": `{"proxies": {"default": {"httpProxy": "x"}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := Register([]byte(in), testHost, testHelper, "pass")
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Register = %v, want ErrMalformed", err)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "12345") || strings.Contains(err.Error(), "invalid character") {
				t.Errorf("error quotes the config: %v", err)
			}
		})
	}
}

func TestRegisterRejectsBadArguments(t *testing.T) {
	if _, _, err := Register(nil, "https://", testHelper, ""); err == nil {
		t.Error("Register with no host succeeded")
	}
	if _, _, err := Register(nil, testHost, "", ""); err == nil {
		t.Error("Register with no helper succeeded")
	}
}

func TestRegisterReplacesAnotherHelper(t *testing.T) {
	in := []byte(`{"credHelpers": {"gcr.io": "gcloud", "` + testHost + `": "pass"}}`)
	out, ch, err := Register(in, testHost, testHelper, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"credHelpers": {"gcr.io": "gcloud", "` + testHost + `": "edgecr"}}`; string(out) != want {
		t.Errorf("Register = %s, want %s", out, want)
	}
	if ch.PreviousHelper != "pass" || !ch.SetHelper || ch.CreatedCredHelpers {
		t.Errorf("Change = %+v, want PreviousHelper pass", ch)
	}
	// The user edits the file since; leave still gives the host back to pass.
	edited := bytes.Replace(out, []byte(`{"credHelpers"`), []byte(`{"detachKeys": "ctrl-x", "credHelpers"`), 1)
	back, err := Unregister(edited, ch)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"detachKeys": "ctrl-x", "credHelpers": {"gcr.io": "gcloud", "` + testHost + `": "pass"}}`; string(back) != want {
		t.Errorf("Unregister = %s, want %s", back, want)
	}
}

func TestUnregisterAfterUserEdits(t *testing.T) {
	const in = "{\n  \"auths\": {},\n  \"detachKeys\": \"ctrl-e,e\"\n}\n"
	tests := []struct {
		name string
		edit func(string) string // what happened to config.json between join and leave
		want string
	}{
		{
			name: "a key added",
			edit: func(s string) string {
				return strings.Replace(s, `"detachKeys": "ctrl-e,e"`, `"detachKeys": "ctrl-e,e",`+"\n  \"psFormat\": \"{{.ID}}\"", 1)
			},
			want: "{\n  \"auths\": {},\n  \"detachKeys\": \"ctrl-e,e\",\n  \"psFormat\": \"{{.ID}}\"\n}\n",
		},
		{
			// docker login to another registry went to the credsStore we set and
			// left its marker in auths: the store must stay.
			name: "docker login elsewhere",
			edit: func(s string) string {
				return strings.Replace(s, `"auths": {}`, `"auths": {"other.example": {}}`, 1)
			},
			want: "{\n  \"auths\": {\"other.example\": {}},\n  \"detachKeys\": \"ctrl-e,e\",\n  \"credsStore\": \"pass\"\n}\n",
		},
		{
			name: "another helper added",
			edit: func(s string) string {
				return strings.Replace(s, `"`+testHost+`": "edgecr"`, `"`+testHost+`": "edgecr",`+"\n    \"gcr.io\": \"gcloud\"", 1)
			},
			want: "{\n  \"auths\": {},\n  \"detachKeys\": \"ctrl-e,e\",\n  \"credsStore\": \"pass\",\n  \"credHelpers\": {\n    \"gcr.io\": \"gcloud\"\n  }\n}\n",
		},
		{
			name: "our entry removed by hand",
			edit: func(s string) string {
				return strings.Replace(s, `"`+testHost+`": "edgecr"`, ``, 1)
			},
			// credHelpers is left empty, so Docker detects "pass" again by itself.
			want: "{\n  \"auths\": {},\n  \"detachKeys\": \"ctrl-e,e\",\n  \"credHelpers\": {\n    \n  }\n}\n",
		},
		{
			name: "our entry pointed elsewhere by the user",
			edit: func(s string) string {
				return strings.Replace(s, `"`+testHost+`": "edgecr"`, `"`+testHost+`": "pass"`, 1)
			},
			want: "{\n  \"auths\": {},\n  \"detachKeys\": \"ctrl-e,e\",\n  \"credsStore\": \"pass\",\n  \"credHelpers\": {\n    \"" + testHost + "\": \"pass\"\n  }\n}\n",
		},
		{
			name: "credsStore changed by the user",
			edit: func(s string) string {
				return strings.Replace(s, `"credsStore": "pass"`, `"credsStore": "desktop"`, 1)
			},
			want: "{\n  \"auths\": {},\n  \"detachKeys\": \"ctrl-e,e\",\n  \"credsStore\": \"desktop\"\n}\n",
		},
		{
			name: "reformatted",
			edit: func(s string) string {
				var v any
				if err := json.Unmarshal([]byte(s), &v); err != nil {
					panic(err)
				}
				b, _ := json.Marshal(v)
				return string(b)
			},
			want: `{"auths":{},"detachKeys":"ctrl-e,e"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ch, err := Register([]byte(in), testHost, testHelper, "pass")
			if err != nil {
				t.Fatal(err)
			}
			edited := tt.edit(string(out))
			if edited == string(out) {
				t.Fatalf("the edit did not apply to:\n%s", out)
			}
			back, err := Unregister([]byte(edited), ch)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(back)); diff != "" {
				t.Errorf("Unregister (-want +got):\n%s\nfrom:\n%s", diff, edited)
			}
		})
	}
}

// TestUnregisterKeepsWhatWasThere: an entry that was in place before join
// is not join's to remove.
func TestUnregisterKeepsWhatWasThere(t *testing.T) {
	in := []byte(`{"credHelpers": {"` + testHost + `": "edgecr"}}`)
	out, ch, err := Register(in, testHost, testHelper, "pass")
	if err != nil {
		t.Fatal(err)
	}
	if ch.Changed() || !bytes.Equal(out, in) {
		t.Fatalf("Register changed a config that had the entry: %s", out)
	}
	edited := []byte(`{"credHelpers": {"` + testHost + `": "edgecr"}, "detachKeys": "x"}`)
	for _, doc := range [][]byte{out, edited} {
		back, err := Unregister(doc, ch)
		if err != nil || !bytes.Equal(back, doc) {
			t.Errorf("Unregister(%s) = %s, %v; want it unchanged", doc, back, err)
		}
	}
}

func TestUnregisterMalformed(t *testing.T) {
	_, ch, err := Register([]byte(`{}`), testHost, testHelper, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unregister([]byte(`{"credHelpers": `), ch); !errors.Is(err, ErrMalformed) {
		t.Errorf("Unregister of a malformed config = %v, want ErrMalformed", err)
	}
}

func TestUnregisterZeroChange(t *testing.T) {
	in := []byte(`{"credHelpers": {"` + testHost + `": "edgecr"}}`)
	if out, err := Unregister(in, Change{}); err != nil || !bytes.Equal(out, in) {
		t.Errorf("Unregister with a zero Change = %s, %v; want the config unchanged", out, err)
	}
}
