package trust_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/trust"
	"gopkg.in/yaml.v3"
)

const (
	k3sReg = "ecr.dev1.example.com:31001"
	k3sCA  = "/etc/rancher/k3s/edgecr/ecr.dev1.example.com:31001/ca.crt"
)

func decodeYAML(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("result does not parse: %v\n%s", err, b)
	}
	return v
}

func caFileOf(t *testing.T, b []byte) any {
	t.Helper()
	v := decodeYAML(t, b)
	configs, _ := v["configs"].(map[string]any)
	reg, _ := configs[k3sReg].(map[string]any)
	tls, _ := reg["tls"].(map[string]any)
	return tls["ca_file"]
}

// Merge then Remove: every fixture gets the entry, keeps everything else,
// and comes back byte-identical (textual edit) or, for layouts edited by
// re-encoding, with the same data.
func TestK3sMergeRemove(t *testing.T) {
	for _, tc := range []struct {
		name      string
		src       string
		want      string // expected merge result; "" to skip the exact check
		byteExact bool   // Remove gives back src byte for byte
	}{
		{
			name:      "new file",
			src:       "",
			want:      "configs:\n  \"" + k3sReg + "\":\n    tls:\n      ca_file: \"" + k3sCA + "\" # added by edgecr join\n",
			byteExact: true,
		},
		{
			name:      "comments only",
			src:       "# registries for this node\n",
			want:      "# registries for this node\nconfigs:\n  \"" + k3sReg + "\":\n    tls:\n      ca_file: \"" + k3sCA + "\" # added by edgecr join\n",
			byteExact: true,
		},
		{
			name: "foreign mirrors and configs",
			src: `# managed by hand
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
configs:
  "mirror.example.com:5000":
    auth:
      username: xxxxxx # this is the registry username
      password: xxxxxx # this is the registry password
    tls:
      insecure_skip_verify: false
`,
			want: `# managed by hand
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
configs:
  "` + k3sReg + `":
    tls:
      ca_file: "` + k3sCA + `" # added by edgecr join
  "mirror.example.com:5000":
    auth:
      username: xxxxxx # this is the registry username
      password: xxxxxx # this is the registry password
    tls:
      insecure_skip_verify: false
`,
			byteExact: true,
		},
		{
			name: "mirrors only, four-space indent, no final newline",
			src:  "mirrors:\n    docker.io:\n        endpoint: [\"https://m.example.com\"]",
			want: "mirrors:\n    docker.io:\n        endpoint: [\"https://m.example.com\"]\nconfigs:\n  \"" + k3sReg + "\":\n    tls:\n      ca_file: \"" + k3sCA + "\" # added by edgecr join\n",
		},
		{
			name:      "registry entry with auth",
			src:       "configs:\n  \"" + k3sReg + "\":\n    auth:\n      username: robot\n",
			want:      "configs:\n  \"" + k3sReg + "\":\n    tls:\n      ca_file: \"" + k3sCA + "\" # added by edgecr join\n    auth:\n      username: robot\n",
			byteExact: true,
		},
		{
			name:      "registry entry with tls client cert",
			src:       "configs:\n  \"" + k3sReg + "\":\n    tls:\n      cert_file: /etc/c.pem\n      key_file: /etc/k.pem\n",
			want:      "configs:\n  \"" + k3sReg + "\":\n    tls:\n      ca_file: \"" + k3sCA + "\" # added by edgecr join\n      cert_file: /etc/c.pem\n      key_file: /etc/k.pem\n",
			byteExact: true,
		},
		{
			name:      "CRLF line endings",
			src:       "mirrors:\r\n  docker.io:\r\n    endpoint:\r\n      - https://m.example.com\r\n",
			want:      "mirrors:\r\n  docker.io:\r\n    endpoint:\r\n      - https://m.example.com\r\nconfigs:\r\n  \"" + k3sReg + "\":\r\n    tls:\r\n      ca_file: \"" + k3sCA + "\" # added by edgecr join\r\n",
			byteExact: true,
		},
		{name: "flow style configs", src: "configs: {\"other:5000\": {auth: {username: u}}}\n"},
		{name: "null configs", src: "mirrors: {}\nconfigs:\n"},
		{name: "null document", src: "~\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			merged, changed, err := trust.MergeK3sRegistries([]byte(tc.src), k3sReg, k3sCA)
			if err != nil || !changed {
				t.Fatalf("Merge = changed %v, %v", changed, err)
			}
			if tc.want != "" && string(merged) != tc.want {
				t.Errorf("Merge result:\n%s\nwant:\n%s", merged, tc.want)
			}
			if got := caFileOf(t, merged); got != k3sCA {
				t.Errorf("ca_file = %v, want %s", got, k3sCA)
			}
			orig := decodeYAML(t, []byte(tc.src))
			for k, v := range orig {
				if k == "configs" {
					continue
				}
				if got := decodeYAML(t, merged)[k]; !yamlEqual(t, got, v) {
					t.Errorf("foreign key %q changed: %v -> %v", k, v, got)
				}
			}

			again, changed, err := trust.MergeK3sRegistries(merged, k3sReg, k3sCA)
			if err != nil || changed || string(again) != string(merged) {
				t.Errorf("second Merge = changed %v, %v", changed, err)
			}

			removed, changed, err := trust.RemoveK3sRegistries(merged, k3sReg, k3sCA)
			if err != nil || !changed {
				t.Fatalf("Remove = changed %v, %v", changed, err)
			}
			if tc.byteExact && string(removed) != tc.src {
				t.Errorf("Remove result:\n%q\nwant the original:\n%q", removed, tc.src)
			}
			// A level that was null before ("configs:") is pruned as empty:
			// the same to k3s, so compare without top-level nulls.
			for k, v := range orig {
				if v == nil {
					delete(orig, k)
				}
			}
			if !yamlEqual(t, decodeYAML(t, removed), orig) && !(len(orig) == 0 && len(decodeYAML(t, removed)) == 0) {
				t.Errorf("Remove result %v, want the original data %v", decodeYAML(t, removed), orig)
			}
		})
	}
}

// "mirrors only, no final newline" gets one newline added by Merge; Remove
// gives back the data and the newline stays. Byte-exactness holds for files
// ending in a newline, which is what editors write.
func yamlEqual(t *testing.T, a, b any) bool {
	t.Helper()
	ab, err1 := yaml.Marshal(a)
	bb, err2 := yaml.Marshal(b)
	return err1 == nil && err2 == nil && string(ab) == string(bb)
}

// Configs the user added under edgecr's own configs key stay when edgecr
// takes its entry out.
func TestK3sRemoveKeepsEntriesAddedLater(t *testing.T) {
	merged, _, err := trust.MergeK3sRegistries(nil, k3sReg, k3sCA)
	if err != nil {
		t.Fatal(err)
	}
	edited := string(merged) + "  \"later.example.com:443\":\n    auth:\n      username: me\n"
	out, changed, err := trust.RemoveK3sRegistries([]byte(edited), k3sReg, k3sCA)
	if err != nil || !changed {
		t.Fatalf("Remove = %v, %v", changed, err)
	}
	want := "configs:\n  \"later.example.com:443\":\n    auth:\n      username: me\n"
	if string(out) != want {
		t.Errorf("Remove result:\n%s\nwant:\n%s", out, want)
	}
}

func TestK3sRemoveLeavesOthersAlone(t *testing.T) {
	for name, src := range map[string]string{
		"no entry":            "configs:\n  \"other:1\":\n    tls:\n      ca_file: /x\n",
		"user's own ca_file":  "configs:\n  \"" + k3sReg + "\":\n    tls:\n      ca_file: /etc/my-ca.pem\n",
		"empty":               "",
		"configs not mapping": "configs:\n",
	} {
		out, changed, err := trust.RemoveK3sRegistries([]byte(src), k3sReg, k3sCA)
		if err != nil || changed || string(out) != src {
			t.Errorf("%s: Remove = %q, %v, %v; want unchanged", name, out, changed, err)
		}
	}
}

func TestK3sMergeConflict(t *testing.T) {
	src := "configs:\n  \"" + k3sReg + "\":\n    tls:\n      ca_file: /etc/my-ca.pem\n"
	_, _, err := trust.MergeK3sRegistries([]byte(src), k3sReg, k3sCA)
	if !errors.Is(err, trust.ErrConflict) || !strings.Contains(err.Error(), "/etc/my-ca.pem") {
		t.Fatalf("Merge error = %v, want ErrConflict naming the existing ca_file", err)
	}
}

func TestK3sMalformed(t *testing.T) {
	for name, src := range map[string]string{
		"bad indentation":     "mirrors:\n  docker.io:\n endpoint: x\n",
		"tab indentation":     "configs:\n\t\"a:1\": {}\n",
		"top-level list":      "- configs\n",
		"top-level scalar":    "hello\n",
		"duplicate key":       "configs: {}\nconfigs: {}\n",
		"configs is a list":   "configs:\n  - a\n",
		"tls is a string":     "configs:\n  \"" + k3sReg + "\":\n    tls: yes\n",
		"two documents":       "mirrors: {}\n---\nconfigs: {}\n",
		"unterminated string": "configs:\n  \"a:1\n",
	} {
		for _, op := range []struct {
			name string
			f    func([]byte, string, string) ([]byte, bool, error)
		}{{"Merge", trust.MergeK3sRegistries}, {"Remove", trust.RemoveK3sRegistries}} {
			_, _, err := op.f([]byte(src), k3sReg, k3sCA)
			if !errors.Is(err, trust.ErrMalformedConfig) {
				t.Errorf("%s of %s: error %v, want ErrMalformedConfig", op.name, name, err)
			}
		}
	}
}
