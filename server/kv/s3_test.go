package kv_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

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

// TestS3MinIORestart: while the object store is down, calls fail with an
// error (not a hang past their context, not ErrNotFound); after it comes
// back on the same data, the state is all there.
func TestS3MinIORestart(t *testing.T) {
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	s, err := kv.NewS3(kv.S3Config{Bucket: m.CreateBucket(t), KeyPrefix: "state/", Endpoint: m.Endpoint, Region: m.Region})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, err := s.Put(ctx, "tokens/t1", []byte("10"), "")
	if err != nil {
		t.Fatal(err)
	}
	m.Stop()
	down, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err = s.Get(down, "tokens/t1")
	if err == nil || errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get with the store down = %v, want an error that is not ErrNotFound", err)
	}
	if _, err = s.Put(down, "tokens/t1", []byte("9"), v); err == nil || errors.Is(err, kv.ErrConflict) {
		t.Fatalf("Put with the store down = %v, want an error that is not ErrConflict", err)
	}
	t.Logf("with the store down, after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("calls with the store down took %s, past their 5s context", d)
	}
	m.Restart(t)
	if val, v2, err := s.Get(ctx, "tokens/t1"); err != nil || string(val) != "10" || v2 != v {
		t.Fatalf("Get after the restart = %q, %q, %v; want \"10\", %q", val, v2, err, v)
	}
}

// TestS3ListVersions: one LIST names each key with the version Get
// returns; a deleted key (tombstone) is not listed; paging works as List's.
func TestS3ListVersions(t *testing.T) {
	c := &kvtest.Counter{}
	s := openS3(t, c)(t).(*kv.S3)
	ctx := context.Background()
	want := map[string]kv.Version{}
	for i := range 5 {
		k := fmt.Sprintf("ids/%02d.json", i)
		v, err := s.Put(ctx, k, []byte(k), "")
		if err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	if err := s.Delete(ctx, "ids/03.json", ""); err != nil {
		t.Fatal(err)
	}
	delete(want, "ids/03.json")
	c.Take()
	kvs, err := s.ListVersions(ctx, "ids/", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Take(); !maps.Equal(got, map[string]int{"GET 200": 1}) {
		t.Errorf("requests of ListVersions: %s, want one GET (the LIST)", kvtest.Format(got))
	}
	got := map[string]kv.Version{}
	for _, k := range kvs {
		got[k.Key] = k.Version
		if _, v, err := s.Get(ctx, k.Key); err != nil || v != k.Version {
			t.Errorf("Get(%s) version %s, %v; listed %s", k.Key, v, err, k.Version)
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("ListVersions = %v, want %v", got, want)
	}
	page, err := s.ListVersions(ctx, "ids/", "ids/01.json", 2)
	if err != nil || len(page) != 2 || page[0].Key != "ids/02.json" || page[1].Key != "ids/04.json" {
		t.Fatalf("ListVersions after ids/01.json, 2 = %v, %v; want ids/02.json, ids/04.json", page, err)
	}
}
