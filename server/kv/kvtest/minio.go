package kvtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// MinIOVersion is the pinned MinIO the S3 tests run against; .ci/build-minio
// builds it (keep the two in step).
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// MinIOBinary is where .ci/build-minio puts the pinned MinIO:
// $EDGECR_MINIO if set, else ${XDG_CACHE_HOME:-$HOME/.cache}/edgecr-tools/minio-<version>.
func MinIOBinary() string {
	if p := os.Getenv("EDGECR_MINIO"); p != "" {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "edgecr-tools", "minio-"+MinIOVersion)
}

// MinIO is a MinIO server a test started on 127.0.0.1 with a temp dir, a
// random port and random root credentials.
type MinIO struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Region    string

	bin, dir, addr, log string
	cmd                 *exec.Cmd
	exited              chan struct{}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// StartMinIO starts a MinIO for t and stops it when t ends. Without the
// built binary the test skips (fails under EDGECR_NO_SKIP=1) saying how to
// build it. It does not touch the environment: see SetCredentials.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := MinIOBinary()
	_, err := os.Stat(bin)
	testenv.Need(t, err == nil, fmt.Sprintf("no MinIO at %s (build it with .ci/build-minio): %v", bin, err))
	m := &MinIO{
		AccessKey: "edgecr" + randHex(6),
		SecretKey: randHex(20),
		Region:    "us-east-1",
		bin:       bin,
		dir:       t.TempDir(),
	}
	m.log = filepath.Join(m.dir, "minio.log")
	var lastErr error
	for range 5 { // a free port can be taken between probe and bind
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		m.addr = l.Addr().String()
		l.Close()
		if lastErr = m.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("starting MinIO: %v", lastErr)
	}
	m.Endpoint = "http://" + m.addr
	t.Cleanup(m.Stop)
	return m
}

func (m *MinIO) start() error {
	data := filepath.Join(m.dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(m.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.addr,
		"--certs-dir", filepath.Join(m.dir, "certs"), data)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"HOME="+m.dir,
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(m.exited) }()
	// The machine may be busy: give it a minute to answer.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-m.exited:
			b, _ := os.ReadFile(m.log)
			return fmt.Errorf("minio exited: %s", tail(string(b)))
		case <-time.After(100 * time.Millisecond):
		}
		// /minio/health/ready answers 200 before the S3 API is up; the API
		// answers 503 (with a Retry-After the SDK waits a minute for) until
		// it is, then 403 to this anonymous ListBuckets.
		resp, err := http.Get("http://" + m.addr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				return nil
			}
		}
	}
	m.Stop()
	b, _ := os.ReadFile(m.log)
	return fmt.Errorf("minio on %s not ready after a minute: %s", m.addr, tail(string(b)))
}

func tail(s string) string {
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return strings.TrimSpace(s)
}

// Pid is the process id of the running MinIO (0 when stopped), for a
// benchmark that reads its CPU time.
func (m *MinIO) Pid() int {
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Stop kills MinIO (its data stays until the test ends).
func (m *MinIO) Stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

// Restart starts a stopped MinIO again on the same port and data.
func (m *MinIO) Restart(t testing.TB) {
	t.Helper()
	m.Stop()
	if err := m.start(); err != nil {
		t.Fatalf("restarting MinIO: %v", err)
	}
}

// SetCredentials points the standard AWS environment variables at this
// MinIO for the rest of t (and hides any shared credentials file).
func (m *MinIO) SetCredentials(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(m.dir, "no-credentials-file"))
	t.Setenv("AWS_PROFILE", "")
}

// Client is an S3 client of this MinIO with its root credentials.
func (m *MinIO) Client(t testing.TB) *s3.S3 {
	t.Helper()
	sess, err := session.NewSessionWithOptions(session.Options{
		Config: *aws.NewConfig().WithEndpoint(m.Endpoint).WithRegion(m.Region).
			WithDisableSSL(true).WithS3ForcePathStyle(true).
			WithCredentials(credentials.NewStaticCredentials(m.AccessKey, m.SecretKey, "")),
		SharedConfigState: session.SharedConfigDisable,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s3.New(sess)
}

// CreateBucket creates a bucket with a fresh random name and returns it.
func (m *MinIO) CreateBucket(t testing.TB) string {
	t.Helper()
	name := "edgecr-test-" + randHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := m.Client(t).CreateBucketWithContext(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
	return name
}

// Objects lists the names of the objects in bucket under prefix (up to 1000).
func (m *MinIO) Objects(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := m.Client(t).ListObjectsV2WithContext(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("listing bucket %s: %v", bucket, err)
	}
	var names []string
	for _, o := range out.Contents {
		names = append(names, aws.StringValue(o.Key))
	}
	return names
}
