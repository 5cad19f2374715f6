package agent

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const testMirror = "https://ecr.box.internal:31002"

func TestDockerAddRemoveMirror(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"no file", "", "{\n  \"registry-mirrors\": [\n    \"" + testMirror + "\"\n  ]\n}\n"},
		{"other keys kept", `{"data-root": "/var/lib/docker", "log-opts": {"max-size": "10m"}, "mtu": 1400}`,
			"{\n  \"data-root\": \"/var/lib/docker\",\n  \"log-opts\": {\n    \"max-size\": \"10m\"\n  },\n  \"mtu\": 1400,\n  \"registry-mirrors\": [\n    \"" + testMirror + "\"\n  ]\n}\n"},
		{"mirrors kept, ours last", `{"registry-mirrors": ["https://other.example"]}`,
			"{\n  \"registry-mirrors\": [\n    \"https://other.example\",\n    \"" + testMirror + "\"\n  ]\n}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dockerAddMirror([]byte(tc.in), testMirror)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			again, err := dockerAddMirror(got, testMirror)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("second add changed the file: %v\n%s", err, again)
			}
			back, changed, err := dockerRemoveMirror(got, testMirror)
			if err != nil || !changed {
				t.Fatalf("remove: %v %v", changed, err)
			}
			if !sameJSON(t, back, tc.in) {
				t.Errorf("remove gave %s, want %s", back, tc.in)
			}
		})
	}
	for _, bad := range []string{"[]", "null", `{"registry-mirrors": "x"}`, `{} {}`, `{"a":`} {
		if _, err := dockerAddMirror([]byte(bad), testMirror); err == nil {
			t.Errorf("dockerAddMirror(%q): no error", bad)
		}
	}
}

func sameJSON(t *testing.T, a []byte, b string) bool {
	var x, y map[string]any
	json.Unmarshal(a, &x)
	if strings.TrimSpace(b) != "" {
		json.Unmarshal([]byte(b), &y)
	}
	if len(x) == 0 && len(y) == 0 {
		return true
	}
	return reflect.DeepEqual(x, y)
}

func TestContainerdAddRemoveMirror(t *testing.T) {
	ca := "/etc/containerd/certs.d/docker.io/edgecr-mirror-ca.crt"
	block := containerdHostsBlock(testMirror, ca)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"no file", "", "server = \"https://registry-1.docker.io\"\n\n" + block},
		{"server only", "server = \"https://registry-1.docker.io\"\n", "server = \"https://registry-1.docker.io\"\n\n" + block},
		{"before the user's hosts", "server = \"https://registry-1.docker.io\"\n\n[host.\"https://cache.lan\"]\n  capabilities = [\"pull\"]\n",
			"server = \"https://registry-1.docker.io\"\n\n" + block + "\n[host.\"https://cache.lan\"]\n  capabilities = [\"pull\"]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := containerdAddMirror([]byte(tc.in), "docker.io", testMirror, ca)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if !containerdHasMirror(got, testMirror) {
				t.Error("containerdHasMirror: false after add")
			}
			again, err := containerdAddMirror(got, "docker.io", testMirror, ca)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("second add changed the file: %v\n%s", err, again)
			}
			back, changed, err := containerdRemoveMirror(got)
			if err != nil || !changed {
				t.Fatalf("remove: %v %v", changed, err)
			}
			if tc.in != "" && string(back) != tc.in {
				t.Errorf("remove gave\n%q\nwant\n%q", back, tc.in)
			}
		})
	}
	if _, err := containerdAddMirror([]byte("[host.\""+testMirror+"\"]\n"), "docker.io", testMirror, ca); err == nil {
		t.Error("add over the user's table for the same host: no error")
	}
	if out, changed, _ := containerdRemoveMirror([]byte(hostsTOMLBegin + "\n[host.\"x\"]\n  capabilities = [\"push\"]\n" + hostsTOMLEnd + "\n")); changed {
		t.Errorf("remove took a block the user edited:\n%s", out)
	}
}

func FuzzDockerMirror(f *testing.F) {
	f.Add([]byte(`{"mtu": 1400, "registry-mirrors": ["https://a"]}`))
	f.Add([]byte(""))
	f.Add([]byte(`{"registry-mirrors": []}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := dockerAddMirror(in, testMirror)
		if err != nil {
			return
		}
		if !dockerHasMirror(out, testMirror) {
			t.Fatalf("added, but not listed: %s", out)
		}
		again, err := dockerAddMirror(out, testMirror)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %v", err)
		}
		back, _, err := dockerRemoveMirror(out, testMirror)
		if err != nil {
			t.Fatalf("removing what was added: %v", err)
		}
		if dockerHasMirror(in, testMirror) {
			return // ours was there before: remove takes it anyway
		}
		var x, y map[string]json.RawMessage
		json.Unmarshal(back, &x)
		if len(bytes.TrimSpace(in)) > 0 {
			json.Unmarshal(in, &y)
		}
		for _, m := range []map[string]json.RawMessage{x, y} {
			delete(m, daemonMirrorsKey) // an empty list of them goes with ours
		}
		if len(x) != len(y) {
			t.Fatalf("remove(add(x)) has %d keys, x %d", len(x), len(y))
		}
	})
}

func FuzzContainerdMirror(f *testing.F) {
	f.Add([]byte("server = \"https://registry-1.docker.io\"\n"))
	f.Add([]byte("[host.\"https://a\"]\n  capabilities = [\"pull\"]\n"))
	f.Add([]byte(""))
	f.Add([]byte("x\n" + hostsTOMLBegin + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ca := "/ca.crt"
		out, err := containerdAddMirror(in, "docker.io", testMirror, ca)
		if err != nil {
			return
		}
		if !containerdHasMirror(out, testMirror) {
			t.Fatalf("added, but not there:\n%s", out)
		}
		again, err := containerdAddMirror(out, "docker.io", testMirror, ca)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %v\n%q\n%q", err, out, again)
		}
		back, changed, err := containerdRemoveMirror(out)
		if err != nil || !changed {
			t.Fatalf("removing what was added: %v %v", changed, err)
		}
		if containerdHasMirror(back, testMirror) {
			t.Fatalf("still there after remove:\n%s", back)
		}
	})
}

func TestK3sAddRemoveMirror(t *testing.T) {
	orig := "configs:\n  other.lan:5000:\n    tls:\n      insecure_skip_verify: true\nmirrors:\n  docker.io:\n    endpoint:\n      - https://cache.lan\n"
	out, err := k3sAddMirror([]byte(orig), "docker.io", testMirror)
	if err != nil {
		t.Fatal(err)
	}
	if !k3sHasMirror(out, "docker.io", testMirror) || !strings.Contains(string(out), "insecure_skip_verify: true") ||
		strings.Index(string(out), testMirror) > strings.Index(string(out), "https://cache.lan") {
		t.Errorf("after add (ours first, the rest kept):\n%s", out)
	}
	again, err := k3sAddMirror(out, "docker.io", testMirror)
	if err != nil || !bytes.Equal(again, out) {
		t.Errorf("second add changed the file: %v\n%s", err, again)
	}
	back, changed, err := k3sRemoveMirror(out, "docker.io", testMirror)
	if err != nil || !changed || string(back) != orig {
		t.Errorf("remove: %v %v\n%s\nwant\n%s", changed, err, back, orig)
	}
	fresh, err := k3sAddMirror(nil, "quay.io", testMirror)
	if err != nil {
		t.Fatal(err)
	}
	if gone, _, _ := k3sRemoveMirror(fresh, "quay.io", testMirror); len(gone) != 0 {
		t.Errorf("remove from a file join created left %q", gone)
	}
	for _, bad := range []string{"[]", "mirrors: 3", "mirrors:\n  docker.io:\n    endpoint: x\n", "a: 1\na: 2\n"} {
		if _, err := k3sAddMirror([]byte(bad), "docker.io", testMirror); err == nil {
			t.Errorf("k3sAddMirror(%q): no error", bad)
		}
	}
}

func FuzzK3sMirror(f *testing.F) {
	f.Add([]byte("mirrors:\n  docker.io:\n    endpoint: [\"https://a\"]\n"))
	f.Add([]byte(""))
	f.Add([]byte("configs: {}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := k3sAddMirror(in, "docker.io", testMirror)
		if err != nil {
			return
		}
		if !k3sHasMirror(out, "docker.io", testMirror) {
			t.Fatalf("added, but not listed:\n%s", out)
		}
		again, err := k3sAddMirror(out, "docker.io", testMirror)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %v", err)
		}
		back, _, err := k3sRemoveMirror(out, "docker.io", testMirror)
		if err != nil {
			t.Fatalf("removing what was added: %v", err)
		}
		if k3sHasMirror(back, "docker.io", testMirror) {
			t.Fatalf("still listed after remove:\n%s", back)
		}
	})
}
