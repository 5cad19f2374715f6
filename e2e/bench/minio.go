package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/edgecr/edgecr/e2e/benchutil"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// bucket is the pinned MinIO (.ci/build-minio) on a loopback port with its
// data under the benchmark's temp dir, and one bucket on it: -storage s3.
type bucket struct {
	storage string   // edgecrd's --storage URL
	env     []string // edgecrd's environment: the AWS credentials of MinIO
	name    string   // the bucket
	prefix  string   // the --storage prefix, no slashes around it
	client  *s3.S3   // with MinIO's root credentials
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startBucket starts MinIO under dir and creates a bucket; stop ends it.
func startBucket(ctx context.Context, dir string) (*bucket, error) {
	bin := kvtest.MinIOBinary()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("-storage s3 needs the pinned MinIO (build it with .ci/build-minio, or set EDGECR_MINIO): %w", err)
	}
	port, err := benchutil.FreePort()
	if err != nil {
		return nil, err
	}
	rnd := make([]byte, 26)
	rand.Read(rnd)
	access, secret := "bench"+hex.EncodeToString(rnd[:6]), hex.EncodeToString(rnd[6:])
	addr := net.JoinHostPort("127.0.0.1", port)
	mdir, logPath := filepath.Join(dir, "minio"), filepath.Join(dir, "minio.log")
	if err := os.MkdirAll(filepath.Join(mdir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("creating MinIO's data dir: %w", err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating MinIO's log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr,
		"--certs-dir", filepath.Join(mdir, "certs"), filepath.Join(mdir, "data"))
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+access, "MINIO_ROOT_PASSWORD="+secret,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME="+mdir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = benchutil.ChildAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting MinIO: %w", err)
	}
	b := &bucket{name: "edgecr-bench", prefix: "site", cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(b.exited) }()
	if err := b.awaitReady(ctx, addr, logPath); err != nil {
		b.stop()
		return nil, err
	}
	sess, err := session.NewSessionWithOptions(session.Options{
		Config: *aws.NewConfig().WithEndpoint("http://" + addr).WithRegion("us-east-1").
			WithDisableSSL(true).WithS3ForcePathStyle(true).
			WithCredentials(credentials.NewStaticCredentials(access, secret, "")),
		SharedConfigState: session.SharedConfigDisable,
	})
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("an S3 session for MinIO at %s: %w", addr, err)
	}
	b.client = s3.New(sess)
	if _, err := b.client.CreateBucketWithContext(ctx, &s3.CreateBucketInput{Bucket: aws.String(b.name)}); err != nil {
		b.stop()
		return nil, fmt.Errorf("creating bucket %s on MinIO at %s: %w", b.name, addr, err)
	}
	b.storage = "s3://" + b.name + "/" + b.prefix + "?endpoint=http://" + addr + "&region=us-east-1"
	b.env = append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+access,
		"AWS_SECRET_ACCESS_KEY="+secret,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "no-aws-credentials"),
	)
	return b, nil
}

// awaitReady waits until MinIO's S3 API answers: 503 until it is up, then
// 403 to an anonymous ListBuckets.
func (b *bucket) awaitReady(ctx context.Context, addr, logPath string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-b.exited:
			return fmt.Errorf("MinIO exited at start\n%s", benchutil.LogTail(logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := http.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				return nil
			}
		}
	}
	return fmt.Errorf("MinIO on %s not ready a minute after start\n%s", addr, benchutil.LogTail(logPath))
}

// put writes one object under the --storage prefix.
func (b *bucket) put(ctx context.Context, key string, data []byte) error {
	_, err := b.client.PutObjectWithContext(ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.name), Key: aws.String(b.prefix + "/" + key), Body: bytes.NewReader(data),
	})
	if err != nil {
		return fmt.Errorf("writing %s/%s/%s to MinIO: %w", b.name, b.prefix, key, err)
	}
	return nil
}

func (b *bucket) pid() int { return b.cmd.Process.Pid }

// stop kills MinIO and reaps it.
func (b *bucket) stop() {
	_ = b.cmd.Process.Kill()
	<-b.exited
}

// storageName says in a report where edgecrd kept its images.
func storageName(storage string) string {
	if storage == "s3" {
		return "a bucket (`edgecrd serve --storage s3://BUCKET/PREFIX?endpoint=...`) on the pinned MinIO " + kvtest.MinIOVersion + " on loopback"
	}
	return "a data dir"
}
