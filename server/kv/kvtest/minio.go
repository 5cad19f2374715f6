package kvtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/edgecr/edgecr/internal/childproc"
)

// MinIOVersion is the pinned MinIO the S3 tests, the soak and the
// benchmarks run against; .ci/build-minio builds it (keep the two in step).
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// MinIOBinary is where .ci/build-minio puts the pinned MinIO:
// $EDGECR_MINIO if set, else ${XDG_CACHE_HOME:-$HOME/.cache}/edgecr-tools/minio-<version>.
func MinIOBinary() string {
	return testenv.ToolPath("EDGECR_MINIO", "minio", MinIOVersion)
}

// ErrNoMinIO is what LaunchMinIO's error wraps when the pinned MinIO is not
// built.
var ErrNoMinIO = errors.New("no MinIO")

// MinIOOptions says where LaunchMinIO keeps a MinIO's files and how it runs
// the process.
type MinIOOptions struct {
	// Dir holds MinIO's data (Dir/data), its certs dir, its HOME and its
	// log (Dir/minio.log); it is created if missing.
	Dir string
	// SysProcAttr, if set, is given to every MinIO process: the soak and
	// the benchmarks make MinIO die with them (benchutil.ChildAttr).
	SysProcAttr *syscall.SysProcAttr
}

// MinIO is the pinned MinIO serving on a loopback port with random root
// credentials. Stop SIGKILLs it and Start runs it again on the same port
// and data (fault injection); its methods may be called concurrently.
type MinIO struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Region    string

	bin, dir, addr string
	attr           *syscall.SysProcAttr
	proc           childproc.Proc
}

// errExited says MinIO exited before it answered, as it does when another
// process took its port.
var errExited = errors.New("exited at start")

// LaunchMinIO starts MinIO (MinIOBinary) on a free 127.0.0.1 port with its
// files in o.Dir and waits until it answers. Without the binary its error
// wraps ErrNoMinIO and says how to build it.
func LaunchMinIO(ctx context.Context, o MinIOOptions) (*MinIO, error) {
	bin := MinIOBinary()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w at %s (build it with .ci/build-minio, or set EDGECR_MINIO): %w", ErrNoMinIO, bin, err)
	}
	m := &MinIO{
		AccessKey: "edgecr" + randHex(6),
		SecretKey: randHex(20),
		Region:    "us-east-1",
		bin:       bin,
		dir:       o.Dir,
		attr:      o.SysProcAttr,
	}
	var err error
	for range 5 { // a free port can be taken between probe and bind
		l, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			return nil, fmt.Errorf("finding a free port for MinIO: %w", lerr)
		}
		m.addr = l.Addr().String()
		l.Close()
		if err = m.Start(ctx); !errors.Is(err, errExited) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	m.Endpoint = "http://" + m.addr
	return m, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Start runs a stopped MinIO again on its port and data and waits until it
// answers, at most a minute (the machine may be busy); if it does not, it
// is stopped and the error ends with its log.
func (m *MinIO) Start(ctx context.Context) error {
	data := filepath.Join(m.dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("creating MinIO's data dir: %w", err)
	}
	logPath := filepath.Join(m.dir, "minio.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening MinIO's log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor
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
	cmd.SysProcAttr = m.attr
	exited, err := m.proc.Start(cmd)
	if err != nil {
		return fmt.Errorf("starting MinIO %s: %w", m.bin, err)
	}
	if err := awaitMinIO(ctx, m.addr, exited); err != nil {
		m.Stop()
		return fmt.Errorf("MinIO on %s: %w\n%s", m.addr, err, minioLogTail(logPath))
	}
	return nil
}

var errNotReady = errors.New("not ready a minute after start")

// awaitMinIO polls MinIO's S3 API on addr until it answers, MinIO exits
// (exited is closed), a minute passes or ctx ends.
// /minio/health/ready answers 200 before the S3 API is up; the API answers
// 503 (with a Retry-After the SDK waits a minute for) until it is, then 403
// to this anonymous ListBuckets.
func awaitMinIO(ctx context.Context, addr string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeoutCause(ctx, time.Minute, errNotReady)
	defer cancel()
	for {
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				return nil
			}
		}
	}
}

// minioLogTail is the end of the MinIO log at path, for error messages.
func minioLogTail(path string) string {
	b, _ := os.ReadFile(path)
	if b = bytes.TrimSpace(b); len(b) == 0 {
		return "(MinIO's log is empty)"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "MinIO log (tail):\n" + string(b)
}

// Pid is the process id of the running MinIO (0 when stopped), for a
// benchmark that reads its CPU time or memory.
func (m *MinIO) Pid() int { return m.proc.Pid() }

// Stop kills MinIO with SIGKILL and reaps it; its data stays. Stopping a
// stopped MinIO does nothing.
func (m *MinIO) Stop() { m.proc.Kill() }

// StartMinIO starts a MinIO for t in a temp dir and stops it when t ends.
// Without the built binary the test skips (fails under EDGECR_NO_SKIP=1)
// saying how to build it. It does not touch the environment: see
// SetCredentials.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	m, err := LaunchMinIO(context.Background(), MinIOOptions{Dir: t.TempDir()})
	if errors.Is(err, ErrNoMinIO) {
		testenv.Need(t, false, err.Error())
	}
	if err != nil {
		t.Fatalf("starting MinIO: %v", err)
	}
	t.Cleanup(m.Stop)
	return m
}

// Restart stops MinIO and starts it again on the same port and data.
func (m *MinIO) Restart(t testing.TB) {
	t.Helper()
	m.Stop()
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("restarting MinIO: %v", err)
	}
}

// CredentialsEnv is the standard AWS environment for MinIO's root
// credentials, with any shared credentials file and profile hidden: append
// it to a child's environment (SetCredentials sets it for a test).
func (m *MinIO) CredentialsEnv() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + m.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + m.SecretKey,
		"AWS_SESSION_TOKEN=",
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(m.dir, "no-credentials-file"),
		"AWS_PROFILE=",
	}
}

// SetCredentials points the standard AWS environment variables at this
// MinIO for the rest of t (and hides any shared credentials file).
func (m *MinIO) SetCredentials(t testing.TB) {
	for _, kv := range m.CredentialsEnv() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// NewClient is an S3 client of this MinIO with its root credentials.
func (m *MinIO) NewClient() (*s3.S3, error) {
	sess, err := session.NewSessionWithOptions(session.Options{
		Config: *aws.NewConfig().WithEndpoint(m.Endpoint).WithRegion(m.Region).
			WithDisableSSL(true).WithS3ForcePathStyle(true).
			WithCredentials(credentials.NewStaticCredentials(m.AccessKey, m.SecretKey, "")),
		SharedConfigState: session.SharedConfigDisable,
	})
	if err != nil {
		return nil, fmt.Errorf("creating an S3 session for MinIO at %s: %w", m.Endpoint, err)
	}
	return s3.New(sess), nil
}

// Client is NewClient for a test.
func (m *MinIO) Client(t testing.TB) *s3.S3 {
	t.Helper()
	c, err := m.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// MakeBucket creates the bucket name.
func (m *MinIO) MakeBucket(ctx context.Context, name string) error {
	c, err := m.NewClient()
	if err != nil {
		return err
	}
	if _, err := c.CreateBucketWithContext(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("creating bucket %s on MinIO at %s: %w", name, m.Endpoint, err)
	}
	return nil
}

// CreateBucket creates a bucket with a fresh random name and returns it.
func (m *MinIO) CreateBucket(t testing.TB) string {
	t.Helper()
	name := "edgecr-test-" + randHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.MakeBucket(ctx, name); err != nil {
		t.Fatal(err)
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
