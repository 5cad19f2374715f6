package kv_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws" // the driver DriverParameters are for

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// TestS3Check: Check names each problem at start, without a secret.
func TestS3Check(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	bucket := m.CreateBucket(t)
	ctx := context.Background()
	cfg := func(bucket, endpoint string) kv.S3Config {
		return kv.S3Config{Bucket: bucket, KeyPrefix: "site/edgecr/state/", Endpoint: endpoint, Region: m.Region, CheckTimeout: 2 * time.Second}
	}
	check := func(t *testing.T, c kv.S3Config, device string) error {
		t.Helper()
		s, err := kv.NewS3(c)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Check(ctx, device)
		if err != nil && (strings.Contains(err.Error(), m.SecretKey) || strings.Contains(err.Error(), "wrong-secret")) {
			t.Fatalf("error %q holds a secret", err)
		}
		return err
	}

	t.Run("first device marks the bucket", func(t *testing.T) {
		if err := check(t, cfg(bucket, m.Endpoint), "device-a"); err != nil {
			t.Fatal(err)
		}
		if err := check(t, cfg(bucket, m.Endpoint), "device-a"); err != nil {
			t.Fatalf("second check of the same device: %v", err)
		}
		s, _ := kv.NewS3(cfg(bucket, m.Endpoint))
		if v, _, err := s.Get(ctx, kv.DeviceKey); err != nil || string(v) != "device-a" {
			t.Fatalf("marker = %q, %v", v, err)
		}
	})
	t.Run("another device's state", func(t *testing.T) {
		err := check(t, cfg(bucket, m.Endpoint), "device-b")
		if !errors.Is(err, kv.ErrOtherDevice) || !strings.Contains(err.Error(), `holds the state of device "device-a", not "device-b"`) {
			t.Fatalf("got %v", err)
		}
		// Another prefix of the same bucket is another device's place.
		c := cfg(bucket, m.Endpoint)
		c.KeyPrefix = "other/edgecr/state/"
		if err := check(t, c, "device-b"); err != nil {
			t.Fatalf("another prefix: %v", err)
		}
	})
	t.Run("no such bucket", func(t *testing.T) {
		err := check(t, cfg("no-such-bucket", m.Endpoint), "device-a")
		if !errors.Is(err, kv.ErrNoBucket) || !strings.Contains(err.Error(), "bucket no-such-bucket at "+m.Endpoint+": the bucket does not exist") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong credentials", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-wrong-secret")
		err := check(t, cfg(bucket, m.Endpoint), "device-a")
		if err == nil || !strings.Contains(err.Error(), "the credentials were refused (403 SignatureDoesNotMatch)") {
			t.Fatalf("got %v", err)
		}
		t.Setenv("AWS_ACCESS_KEY_ID", "nobody")
		err = check(t, cfg(bucket, m.Endpoint), "device-a")
		if err == nil || !strings.Contains(err.Error(), "the credentials were refused (403 InvalidAccessKeyId)") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		err := check(t, cfg(bucket, m.Endpoint), "device-a")
		if err == nil || !strings.Contains(err.Error(), "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("shared credentials file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "credentials")
		ini := "[edge]\naws_access_key_id = " + m.AccessKey + "\naws_secret_access_key = " + m.SecretKey + "\n"
		if err := os.WriteFile(f, []byte(ini), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", f)
		t.Setenv("AWS_PROFILE", "edge")
		if err := check(t, cfg(bucket, m.Endpoint), "device-a"); err != nil {
			t.Fatalf("credentials from the shared file: %v", err)
		}
	})
	t.Run("endpoint refuses connections", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		err = check(t, cfg(bucket, "http://"+addr), "device-a")
		if err == nil || !strings.Contains(err.Error(), "at http://"+addr+": the endpoint does not answer") || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("endpoint does not answer", func(t *testing.T) {
		// Accepts connections, never answers.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		start := time.Now()
		err = check(t, cfg(bucket, "http://"+l.Addr().String()), "device-a")
		if err == nil || !strings.Contains(err.Error(), "at http://"+l.Addr().String()+": no answer within 2s") {
			t.Fatalf("got %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("the check took %s, its bound is 2s", d)
		}
	})
}

// TestS3LocationDriver: distribution's s3-aws driver, made from the
// parameters a storage URL gives, stores and reads blobs on MinIO, beside
// (not inside) the state store's keys.
func TestS3LocationDriver(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	bucket := m.CreateBucket(t)
	loc, err := kv.ParseS3URL("s3://" + bucket + "/site-1?endpoint=" + m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := factory.Create(ctx, loc.Storage().Type(), loc.Storage().Parameters())
	if err != nil {
		t.Fatalf("creating the s3 driver from %v: %v", loc.DriverParameters(), err)
	}
	if err := d.PutContent(ctx, "/docker/registry/v2/blobs/x", []byte("blob")); err != nil {
		t.Fatalf("driver PutContent: %v", err)
	}
	if b, err := d.GetContent(ctx, "/docker/registry/v2/blobs/x"); err != nil || string(b) != "blob" {
		t.Fatalf("driver GetContent = %q, %v", b, err)
	}
	s, err := kv.OpenS3(ctx, loc.KVConfig(), "device-a")
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := s.List(ctx, "", "", 10); err != nil || len(keys) != 1 || keys[0] != kv.DeviceKey {
		t.Fatalf("state keys = %q, %v; want only %s", keys, err, kv.DeviceKey)
	}
	// The blob is under the prefix, where the driver put it, beside the state.
	want := []string{"site-1/docker/registry/v2/blobs/x", "site-1/edgecr/state/meta/device!"}
	if got := m.Objects(t, bucket, ""); !slices.Equal(got, want) {
		t.Fatalf("objects = %q, want %q", got, want)
	}
}
