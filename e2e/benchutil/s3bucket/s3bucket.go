// Package s3bucket is what -storage s3 runs edgecrd on in the soak and the
// benchmarks: a bucket on the pinned MinIO. It is apart from benchutil so
// that the commands without -storage s3 do not link the AWS SDK.
package s3bucket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/edgecr/edgecr/e2e/benchutil"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// Bucket is one bucket on the pinned MinIO (kvtest.LaunchMinIO), which
// dies with this process (benchutil.ChildAttr).
type Bucket struct {
	*kvtest.MinIO
	Name    string   // the bucket
	Prefix  string   // the --storage prefix, no slashes around it
	Storage string   // edgecrd's --storage URL
	Env     []string // edgecrd's environment: this process's with MinIO's root credentials
	client  *s3.S3
}

// Start starts MinIO with its files in dir/minio and creates the
// bucket name on it; Stop ends MinIO.
func Start(ctx context.Context, dir, name string) (*Bucket, error) {
	m, err := kvtest.LaunchMinIO(ctx, kvtest.MinIOOptions{Dir: filepath.Join(dir, "minio"), SysProcAttr: benchutil.ChildAttr()})
	if errors.Is(err, kvtest.ErrNoMinIO) {
		return nil, fmt.Errorf("-storage s3 needs the pinned MinIO: %w", err)
	}
	if err != nil {
		return nil, err
	}
	b := &Bucket{MinIO: m, Name: name, Prefix: "site"}
	if b.client, err = m.NewClient(); err == nil {
		err = m.MakeBucket(ctx, name)
	}
	if err != nil {
		m.Stop()
		return nil, err
	}
	b.Storage = "s3://" + name + "/" + b.Prefix + "?endpoint=" + m.Endpoint + "&region=" + m.Region
	b.Env = append(os.Environ(), m.CredentialsEnv()...)
	return b, nil
}

// Put writes one object under the --storage prefix.
func (b *Bucket) Put(ctx context.Context, key string, data []byte) error {
	_, err := b.client.PutObjectWithContext(ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.Name), Key: aws.String(b.Prefix + "/" + key), Body: bytes.NewReader(data),
	})
	if err != nil {
		return fmt.Errorf("writing %s/%s/%s to MinIO: %w", b.Name, b.Prefix, key, err)
	}
	return nil
}
