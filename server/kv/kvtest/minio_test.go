package kvtest

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
)

// TestLaunchMinIOMissing: without the binary the error wraps ErrNoMinIO
// (the tests skip on it) and says where it looked and how to build it.
func TestLaunchMinIOMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-minio")
	t.Setenv("EDGECR_MINIO", missing)
	_, err := LaunchMinIO(context.Background(), MinIOOptions{Dir: t.TempDir()})
	if !errors.Is(err, ErrNoMinIO) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LaunchMinIO without a binary = %v; want ErrNoMinIO and fs.ErrNotExist", err)
	}
	for _, want := range []string{missing, ".ci/build-minio", "EDGECR_MINIO"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestMinIOStopStart: Stop kills MinIO (no pid, no answer) and Start runs
// it again on the same endpoint and data, as the soak's fault injection
// does.
func TestMinIOStopStart(t *testing.T) {
	m := StartMinIO(t)
	ctx := context.Background()
	if err := m.MakeBucket(ctx, "edgecr-stop-start"); err != nil {
		t.Fatal(err)
	}
	endpoint := m.Endpoint
	if m.Pid() == 0 {
		t.Fatal("Pid of a running MinIO = 0")
	}
	m.Stop()
	if p := m.Pid(); p != 0 {
		t.Fatalf("Pid after Stop = %d, want 0", p)
	}
	m.Stop() // stopping a stopped MinIO does nothing
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Endpoint != endpoint || m.Pid() == 0 {
		t.Fatalf("after Start: endpoint %s, pid %d; want %s and a pid", m.Endpoint, m.Pid(), endpoint)
	}
	if _, err := m.Client(t).HeadBucketWithContext(ctx, &s3.HeadBucketInput{Bucket: aws.String("edgecr-stop-start")}); err != nil {
		t.Fatalf("the bucket made before Stop, after Start: %v", err)
	}
}
