package kv_test

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// openS3 starts a MinIO for t and returns a function that opens a store on
// a fresh bucket (under a key prefix, as edgecrd will use one) per call.
func openS3(t *testing.T, counter *kvtest.Counter) func(t *testing.T) kv.Store {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	return func(t *testing.T) kv.Store {
		cfg := kv.S3Config{Bucket: m.CreateBucket(t), KeyPrefix: "site/edgecr/state/", Endpoint: m.Endpoint, Region: m.Region}
		if counter != nil {
			cfg.HTTPClient = &http.Client{Transport: counter}
		}
		s, err := kv.NewS3(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestS3Contract(t *testing.T) { kvtest.Run(t, openS3(t, nil)) }

// TestS3ConditionalRead: an unchanged key costs one GET answered 304 (no
// body), a changed one one GET 200.
func TestS3ConditionalRead(t *testing.T) {
	c := &kvtest.Counter{}
	s := openS3(t, c)(t)
	ctx := context.Background()
	v, err := s.Put(ctx, "revocations", []byte("1"), "")
	if err != nil {
		t.Fatal(err)
	}
	c.Take()
	if _, _, changed, err := s.GetIfChanged(ctx, "revocations", v); err != nil || changed {
		t.Fatalf("GetIfChanged(current) = changed %v, %v", changed, err)
	}
	if got, want := c.Take(), map[string]int{"GET 304": 1}; !maps.Equal(got, want) {
		t.Fatalf("requests of an unchanged poll: %s, want %s", kvtest.Format(got), kvtest.Format(want))
	}
	if _, err := s.Put(ctx, "revocations", []byte("2"), v); err != nil {
		t.Fatal(err)
	}
	c.Take()
	if val, _, changed, err := s.GetIfChanged(ctx, "revocations", v); err != nil || !changed || string(val) != "2" {
		t.Fatalf("GetIfChanged(old) = %q, changed %v, %v", val, changed, err)
	}
	if got, want := c.Take(), map[string]int{"GET 200": 1}; !maps.Equal(got, want) {
		t.Fatalf("requests of a changed poll: %s, want %s", kvtest.Format(got), kvtest.Format(want))
	}
}

func TestNewS3Errors(t *testing.T) {
	for _, tc := range []struct {
		cfg  kv.S3Config
		want string
	}{
		{kv.S3Config{Region: "us-east-1"}, "creating S3 state store: no bucket"},
		{kv.S3Config{Bucket: "b12"}, "creating S3 state store for bucket b12: no region"},
		{kv.S3Config{Bucket: "b12", Region: "us-east-1", KeyPrefix: "state"}, `key prefix "state" does not end in /`},
	} {
		if _, err := kv.NewS3(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewS3(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
