package main

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
	"sync"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/edgecr/edgecr/e2e/benchutil"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// minio is the pinned MinIO (.ci/build-minio) on a loopback port with its
// data in the soak's work dir, SIGKILLed and restarted by the fault
// injector like edgecrd.
type minio struct {
	bin, dir, addr, logPath string
	access, secret          string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startMinIO starts MinIO and creates the soak's bucket; it returns the
// --storage URL and the environment edgecrd needs for it.
func startMinIO(ctx context.Context, dir string) (*minio, string, []string, error) {
	bin := kvtest.MinIOBinary()
	if _, err := os.Stat(bin); err != nil {
		return nil, "", nil, fmt.Errorf("-storage s3 needs the pinned MinIO (build it with .ci/build-minio, or set EDGECR_MINIO): %w", err)
	}
	port, err := benchutil.FreePort()
	if err != nil {
		return nil, "", nil, err
	}
	m := &minio{bin: bin, dir: filepath.Join(dir, "minio"), addr: net.JoinHostPort("127.0.0.1", port),
		logPath: filepath.Join(dir, "minio.log"), access: "soak" + randHex(6), secret: randHex(20)}
	if err := m.start(ctx); err != nil {
		return nil, "", nil, err
	}
	sess, err := session.NewSessionWithOptions(session.Options{
		Config: *aws.NewConfig().WithEndpoint("http://" + m.addr).WithRegion("us-east-1").
			WithDisableSSL(true).WithS3ForcePathStyle(true).
			WithCredentials(credentials.NewStaticCredentials(m.access, m.secret, "")),
		SharedConfigState: session.SharedConfigDisable,
	})
	if err != nil {
		m.kill()
		return nil, "", nil, fmt.Errorf("an S3 session for MinIO at %s: %w", m.addr, err)
	}
	const bucket = "edgecr-soak"
	if _, err := s3.New(sess).CreateBucketWithContext(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		m.kill()
		return nil, "", nil, fmt.Errorf("creating bucket %s on MinIO at %s: %w", bucket, m.addr, err)
	}
	env := append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+m.access,
		"AWS_SECRET_ACCESS_KEY="+m.secret,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "no-aws-credentials"),
	)
	return m, "s3://" + bucket + "/site?endpoint=http://" + m.addr + "&region=us-east-1", env, nil
}

// start runs MinIO on its port and data and waits until its S3 API answers.
func (m *minio) start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(m.dir, "data"), 0o700); err != nil {
		return fmt.Errorf("creating MinIO's data dir: %w", err)
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening MinIO's log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.addr,
		"--certs-dir", filepath.Join(m.dir, "certs"), filepath.Join(m.dir, "data"))
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.access, "MINIO_ROOT_PASSWORD="+m.secret,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME="+m.dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = benchutil.ChildAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting MinIO: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	m.mu.Lock()
	m.cmd, m.exited = cmd, exited
	m.mu.Unlock()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("MinIO exited at start\n%s", benchutil.LogTail(m.logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		// The S3 API answers 503 until it is up, then 403 to this
		// anonymous ListBuckets.
		if resp, err := http.Get("http://" + m.addr + "/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				return nil
			}
		}
	}
	return fmt.Errorf("MinIO on %s not ready a minute after start\n%s", m.addr, benchutil.LogTail(m.logPath))
}

// kill ends MinIO with SIGKILL and reaps it.
func (m *minio) kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

func (m *minio) pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}
