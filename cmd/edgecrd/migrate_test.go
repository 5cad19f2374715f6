package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgecr/edgecr/server/kv/kvtest"
)

func initDataDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, stderr := edgecrd(t, "init", "--data-dir", dir, "--name", name, "--ip", "198.18.0.20"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	return dir
}

// Bad input: each a clear error that names the problem, before anything
// is copied, and never a secret.
func TestMigrateCommandBadInput(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	bucket := m.CreateBucket(t)
	to := func(b string) string { return "s3://" + b + "?endpoint=" + m.Endpoint }
	dir := initDataDir(t, "box1")
	empty := t.TempDir()
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))

	cases := []struct {
		name  string
		env   map[string]string
		args  []string
		wants string
	}{
		{"no --to", nil, []string{"migrate", "--data-dir", dir}, "--to is required"},
		{"--storage instead of --to", nil, []string{"migrate", "--data-dir", dir, "--storage", to(bucket)}, "migrate takes the bucket as --to"},
		{"typo in the scheme", nil, []string{"migrate", "--data-dir", dir, "--to", "s4://" + bucket + "?endpoint=" + m.Endpoint}, "did you mean s3"},
		{"typo in a parameter", nil, []string{"migrate", "--data-dir", dir, "--to", "s3://" + bucket + "?endpont=" + m.Endpoint}, "did you mean endpoint"},
		{"missing data dir", nil, []string{"migrate", "--data-dir", filepath.Join(empty, "nope"), "--to", to(bucket)}, "does not exist"},
		{"not a data dir", nil, []string{"migrate", "--data-dir", empty, "--to", to(bucket)}, "has no device.json: not an edgecrd data dir"},
		{"bucket missing", nil, []string{"migrate", "--data-dir", dir, "--to", to("no-such-bucket")}, "the bucket does not exist"},
		{"wrong credentials", map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong-secret-0123456789abcdef"}, []string{"migrate", "--data-dir", dir, "--to", to(bucket)}, "credentials were refused"},
		{"no credentials", map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, []string{"migrate", "--data-dir", dir, "--to", to(bucket)}, "no S3 credentials"},
		{"endpoint does not answer", nil, []string{"migrate", "--data-dir", dir, "--to", "s3://" + bucket + "?endpoint=" + dead}, "does not answer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, out, stderr := edgecrd(t, c.args...)
			if code == 0 || !strings.Contains(stderr, c.wants) {
				t.Fatalf("exit %d, stderr %q; want an error with %q", code, stderr, c.wants)
			}
			for _, secret := range []string{m.SecretKey, "wrong-secret-0123456789abcdef"} {
				if strings.Contains(out+stderr, secret) {
					t.Fatalf("the secret is in the output: %s%s", out, stderr)
				}
			}
			t.Logf("%s", strings.TrimSpace(stderr))
		})
	}
	if objs := m.Objects(t, bucket, "docker/"); len(objs) != 0 {
		t.Fatalf("a refused migrate copied images: %v", objs)
	}

	// A bucket holding another device's state.
	if code, out, stderr := edgecrd(t, "migrate", "--data-dir", dir, "--to", to(bucket)); code != 0 {
		t.Fatalf("migrate: %s%s", out, stderr)
	}
	other := initDataDir(t, "box2")
	code, _, stderr := edgecrd(t, "migrate", "--data-dir", other, "--to", to(bucket))
	if code == 0 || !strings.Contains(stderr, "holds another device's state") {
		t.Fatalf("migrate of another device into the bucket: exit %d, %q", code, stderr)
	}
	t.Logf("%s", strings.TrimSpace(stderr))
	// Another device of the same name (its own CA).
	same := initDataDir(t, "box1")
	code, _, stderr = edgecrd(t, "migrate", "--data-dir", same, "--to", to(bucket))
	if code == 0 || !strings.Contains(stderr, "holds a device named box1.internal with another CA") {
		t.Fatalf("migrate of another box1 into the bucket: exit %d, %q", code, stderr)
	}
	t.Logf("%s", strings.TrimSpace(stderr))

	// A data dir a serve owns.
	served := filepath.Join(t.TempDir(), "data")
	serveInBackground(t, served, freePort(t))
	code, _, stderr = edgecrd(t, "migrate", "--data-dir", served, "--to", to(m.CreateBucket(t)))
	if code == 0 || !strings.Contains(stderr, "in use by edgecrd serve") || !strings.Contains(stderr, "stop it first") {
		t.Fatalf("migrate next to serve: exit %d, %q", code, stderr)
	}
}

// SIGKILL in the middle of the copy, then the same command again: it
// resumes, skips what is already there (verified), and finishes.
func TestMigrateCommandKilled(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	bucket := m.CreateBucket(t)
	to := "s3://" + bucket + "?endpoint=" + m.Endpoint
	d := startDevice(t)
	for i := range 2 {
		img := randomImage(t, 48<<20, "linux", "amd64")
		if err := remote.Write(d.ref(t, fmt.Sprintf("big/img:%d", i)), img, d.opts...); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "EDGECRD_TEST_RUN=migrate\n--data-dir\n"+d.dir+"\n--to\n"+to)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-exited:
			t.Fatalf("migrate ended (%v) before it could be killed mid-copy: %s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if len(m.Objects(t, bucket, "docker/registry/v2/blobs/")) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no blob in the bucket after 2 minutes")
		}
	}
	cmd.Process.Kill()
	<-exited
	before := len(m.Objects(t, bucket, "docker/"))
	if _, err := m.Client(t).HeadObject(&s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("edgecr/state/device.json!")}); err == nil {
		t.Fatal("the killed run got as far as the state")
	}
	code, stdout, stderr := edgecrd(t, "migrate", "--data-dir", d.dir, "--to", to)
	if code != 0 {
		t.Fatalf("migrate after the kill: %s%s", stdout, stderr)
	}
	t.Logf("killed with %d objects in the bucket; then:\n%s", before, stdout)
	if !strings.Contains(stdout, "Resumed an interrupted migration") {
		t.Errorf("no word of resuming: %s", stdout)
	}
	sk := regexp.MustCompile(`Images: (\d+) objects copied \([^)]*\), (\d+) already there and verified`).FindStringSubmatch(stdout)
	if sk == nil || sk[2] == "0" {
		t.Errorf("the resumed run skipped nothing: %s", stdout)
	}
	if !strings.Contains(stdout, "edgecrd serve --storage '"+"s3://"+bucket) {
		t.Errorf("no next step: %s", stdout)
	}
}

// runFromEnv is TestMain's other role: with $EDGECRD_TEST_RUN (arguments
// one a line) it is edgecrd, for tests that kill it.
func runFromEnv() (int, bool) {
	a := os.Getenv("EDGECRD_TEST_RUN")
	if a == "" {
		return 0, false
	}
	return run(context.Background(), strings.Split(a, "\n"), streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}), true
}
