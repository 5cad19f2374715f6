package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// TestStorageAdminCommands: init on a bucket, then the admin commands find
// the device there with only the URL.
func TestStorageAdminCommands(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	cache := t.TempDir() // after StartMinIO, which finds MinIO in the real one
	t.Setenv("XDG_CACHE_HOME", cache)
	url := "s3://" + m.CreateBucket(t) + "/site?endpoint=" + m.Endpoint
	code, out, errOut := edgecrd(t, "init", "--storage", url, "--name", "edge1", "--ip", "198.18.0.30")
	if code != 0 {
		t.Fatalf("init --storage: %s", errOut)
	}
	if !strings.Contains(out, "Registry endpoint: ecr.edge1.internal:31001") || !strings.Contains(out, "edgecrd info --storage 's3://") {
		t.Errorf("init --storage printed:\n%s", out)
	}
	code, out, errOut = edgecrd(t, "info", "--storage", url, "-o", "json")
	if code != 0 || !strings.Contains(out, `"endpoint": "ecr.edge1.internal:31001"`) {
		t.Fatalf("info --storage: %d %s %s", code, out, errOut)
	}
	code, out, errOut = edgecrd(t, "token", "create", "--storage", url, "--uses", "2")
	if code != 0 || !strings.Contains(out, "edgecr1.") {
		t.Fatalf("token create --storage: %d %s %s", code, out, errOut)
	}
	code, out, errOut = edgecrd(t, "token", "ls", "--storage", url)
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("token ls --storage: %d %s %s", code, out, errOut)
	}
	code, out, errOut = edgecrd(t, "kube-secret", "--storage", url, "--namespace", "apps")
	if code != 0 || !strings.Contains(out, "kubernetes.io/dockerconfigjson") {
		t.Fatalf("kube-secret --storage: %d %s %s", code, out, errOut)
	}
	code, out, errOut = edgecrd(t, "clients", "ls", "--storage", url)
	if code != 0 || !strings.Contains(out, "kube:apps/") {
		t.Fatalf("clients ls --storage: %d %s %s", code, out, errOut)
	}
	var cs []struct {
		ID      string `json:"id"`
		Revoked bool   `json:"revoked"`
	}
	_, out, _ = edgecrd(t, "clients", "ls", "--storage", url, "-o", "json")
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) != 1 {
		t.Fatalf("clients ls -o json: %v\n%s", err, out)
	}
	if code, _, errOut := edgecrd(t, "clients", "revoke", "--storage", url, cs[0].ID); code != 0 {
		t.Fatalf("clients revoke --storage: %s", errOut)
	}
	_, out, _ = edgecrd(t, "clients", "ls", "--storage", url, "-o", "json")
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) != 1 || !cs[0].Revoked {
		t.Fatalf("after revoke: %v\n%s", err, out)
	}
	// clients ls and token ls keep what they read in the user's cache
	// directory, 0600; the revocation above showed through it. A cache
	// file that cannot be read is a warning.
	files, _ := filepath.Glob(filepath.Join(cache, "edgecrd", "identities-*.json"))
	if len(files) != 1 {
		t.Fatalf("identity cache files: %q, want one", files)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity cache %s: %v, %v; want mode 0600", files[0], fi.Mode(), err)
	}
	if err := os.WriteFile(files[0], []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = edgecrd(t, "clients", "ls", "--storage", url, "-o", "json")
	if err := json.Unmarshal([]byte(out), &cs); code != 0 || err != nil || len(cs) != 1 || !cs[0].Revoked || !strings.Contains(errOut, "warning: reading the identity cache") {
		t.Fatalf("clients ls with a corrupt cache: %d %v\n%s\n%s", code, err, out, errOut)
	}
	// A second init (another replica's) with only the URL is the same device.
	code, out, errOut = edgecrd(t, "init", "--storage", url)
	if code != 0 || !strings.Contains(out, "ecr.edge1.internal") {
		t.Fatalf("init --storage again: %d %s %s", code, out, errOut)
	}
}

// TestStorageBadInput is acceptance 8 of issue 12: bad storage at start is
// a clear error naming the problem, with no secret in it, and nothing is
// written.
func TestStorageBadInput(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	bucket := m.CreateBucket(t)
	url := "s3://" + bucket + "?endpoint=" + m.Endpoint
	if code, _, errOut := edgecrd(t, "init", "--storage", url, "--name", "edge1"); code != 0 {
		t.Fatalf("init --storage: %s", errOut)
	}
	before := m.Objects(t, bucket, "")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close() // nothing listens there now

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{name: "no such bucket", args: []string{"serve", "--storage", "s3://no-such-bucket?endpoint=" + m.Endpoint},
			want: "bucket no-such-bucket at " + m.Endpoint + ": the bucket does not exist"},
		{name: "wrong credentials", env: map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong-secret-0123456789"}, args: []string{"serve", "--storage", url},
			want: "the credentials were refused (403 SignatureDoesNotMatch)"},
		{name: "unknown access key", env: map[string]string{"AWS_ACCESS_KEY_ID": "nobody"}, args: []string{"info", "--storage", url},
			want: "the credentials were refused (403 InvalidAccessKeyId)"},
		{name: "no credentials", env: map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, args: []string{"serve", "--storage", url},
			want: "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
		{name: "endpoint does not answer", args: []string{"serve", "--storage", "s3://" + bucket + "?endpoint=http://" + closed},
			want: "at http://" + closed + ": the endpoint does not answer"},
		{name: "another device's state", args: []string{"serve", "--storage", url, "--name", "other"},
			want: `it holds the state of device "edge1.internal", not "other.internal"`},
		{name: "init of another device", args: []string{"init", "--storage", url, "--name", "edge2"},
			want: `it holds the state of device "edge1.internal", not "edge2.internal"`},
		{name: "scheme typo", args: []string{"serve", "--storage", "s4://" + bucket + "?endpoint=" + m.Endpoint},
			want: `unsupported scheme "s4" (did you mean s3?)`},
		{name: "parameter typo", args: []string{"token", "create", "--storage", "s3://" + bucket + "?endpont=" + m.Endpoint},
			want: `unknown parameter "endpont" (did you mean endpoint?)`},
		{name: "credentials in the URL", args: []string{"serve", "--storage", "s3://key:" + m.SecretKey + "@" + bucket + "?endpoint=" + m.Endpoint},
			want: "user info (@) is not allowed"},
		{name: "bad bucket name", args: []string{"serve", "--storage", "s3://My_Bucket?endpoint=" + m.Endpoint},
			want: "parsing storage URL"},
		{name: "with --data-dir", args: []string{"serve", "--storage", url, "--data-dir", t.TempDir()},
			want: "--storage and --data-dir exclude each other"},
		{name: "backup", args: []string{"backup", "--storage", url, "-o", "x.tar"},
			want: "back the bucket up with the object store's own tools"},
		{name: "restore", args: []string{"restore", "--storage", url, "x.tar"},
			want: "back the bucket up with the object store's own tools"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out, errOut := edgecrd(t, tc.args...)
			t.Logf("%s", strings.TrimSpace(errOut))
			if code == 0 {
				t.Fatalf("exit 0:\n%s", out)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, errOut)
			}
			for _, secret := range []string{m.SecretKey, "wrong-secret"} {
				if strings.Contains(errOut+out, secret) {
					t.Errorf("the output holds a secret:\n%s%s", out, errOut)
				}
			}
		})
	}
	after := m.Objects(t, bucket, "")
	if strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("objects changed by failed starts:\n before %v\n after  %v", before, after)
	}
}
