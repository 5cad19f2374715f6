package kv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
)

// ErrOtherDevice: the bucket (under this prefix) holds another device's state.
var ErrOtherDevice = errors.New("the storage holds another device's state")

// DeviceKey is the marker key naming the device whose state a store holds,
// written create-only by the first Check.
const DeviceKey = "meta/device"

// DefaultCheckTimeout bounds Check when S3Config.CheckTimeout is zero.
const DefaultCheckTimeout = 10 * time.Second

// OpenS3 makes the S3 store and checks it (see Check).
func OpenS3(ctx context.Context, cfg S3Config, deviceID string) (*S3, error) {
	s, err := NewS3(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Check(ctx, deviceID); err != nil {
		return nil, err
	}
	return s, nil
}

// Check tells at start what would otherwise fail later, in words: no
// credentials, an endpoint that does not answer within the check timeout,
// a bucket that does not exist, credentials the store refuses, and a bucket
// that holds another device's state (the DeviceKey marker, written
// create-only with deviceID when absent). No secret is in its errors.
func (s *S3) Check(ctx context.Context, deviceID string) error {
	if deviceID == "" {
		return errors.New("checking S3 state store: empty device id")
	}
	cctx, cancel, timeout, err := s.access(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.Put(cctx, DeviceKey, []byte(deviceID), ""); err == nil {
		return nil
	} else if !errors.Is(err, ErrConflict) {
		return s.checkErr(ctx, cctx, timeout, err)
	}
	have, _, err := s.Get(cctx, DeviceKey)
	if err != nil {
		return s.checkErr(ctx, cctx, timeout, err)
	}
	if string(have) != deviceID {
		return fmt.Errorf("checking %s prefix %q: it holds the state of device %q, not %q: %w", s.target, s.cfg.KeyPrefix, safe(string(have)), deviceID, ErrOtherDevice)
	}
	return nil
}

// Device makes Check's access checks and returns the device whose state
// the store holds (the DeviceKey marker), "" when it holds none yet: how a
// replica that has only the storage URL learns which device it serves.
func (s *S3) Device(ctx context.Context) (string, error) {
	cctx, cancel, timeout, err := s.access(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	have, _, err := s.Get(cctx, DeviceKey)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", s.checkErr(ctx, cctx, timeout, err)
	}
	return string(have), nil
}

// access checks credentials, endpoint, bucket and permission, and returns
// the context (bounded by the check timeout) the rest of a check runs in.
func (s *S3) access(ctx context.Context) (context.Context, context.CancelFunc, time.Duration, error) {
	if _, err := s.c.Config.Credentials.GetWithContext(ctx); err != nil {
		return nil, nil, 0, fmt.Errorf("checking %s: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a shared credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE)", s.target)
	}
	timeout := s.cfg.CheckTimeout
	if timeout == 0 {
		timeout = DefaultCheckTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	// One request that says whether the endpoint answers, the bucket
	// exists and the credentials may read it (its error body has a code,
	// which HEAD's has not).
	_, err := s.c.ListObjectsV2WithContext(cctx, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(s.cfg.KeyPrefix), MaxKeys: aws.Int64(1),
	})
	if err != nil {
		err = s.checkErr(ctx, cctx, timeout, err)
		cancel()
		return nil, nil, 0, err
	}
	return cctx, cancel, timeout, nil
}

func (s *S3) checkErr(ctx, cctx context.Context, timeout time.Duration, err error) error {
	st, code := statusOf(err)
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("checking %s: %w", s.target, ctx.Err())
	case cctx.Err() != nil:
		return fmt.Errorf("checking %s: no answer within %s", s.target, timeout)
	case st == http.StatusNotFound && code == s3.ErrCodeNoSuchBucket || errors.Is(err, ErrNoBucket):
		return fmt.Errorf("checking %s: the bucket does not exist: %w", s.target, ErrNoBucket)
	case st == http.StatusForbidden || st == http.StatusUnauthorized:
		return fmt.Errorf("checking %s: the credentials were refused (%d %s): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the shared credentials file", s.target, st, code)
	case st != 0:
		return fmt.Errorf("checking %s: %d %s", s.target, st, code)
	case errors.As(cause(err), &ne):
		return fmt.Errorf("checking %s: the endpoint does not answer: %v", s.target, ne)
	}
	return fmt.Errorf("checking %s: %w", s.target, err)
}
