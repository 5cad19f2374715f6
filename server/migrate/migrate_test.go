package migrate_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/edgecr/edgecr/server"
	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
	"github.com/edgecr/edgecr/server/migrate"
)

// bucketOf starts a MinIO with a fresh bucket and points the AWS
// environment at it.
func bucketOf(t *testing.T, prefix string) (*kvtest.MinIO, *kv.S3Location) {
	t.Helper()
	m := kvtest.StartMinIO(t)
	m.SetCredentials(t)
	raw := "s3://" + m.CreateBucket(t)
	if prefix != "" {
		raw += "/" + prefix
	}
	loc, err := kv.ParseS3URL(raw + "?endpoint=" + m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return m, loc
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checkBucket compares every image file and state key of the data dir
// with the bucket's copy, by SHA-256 of the content.
func checkBucket(t *testing.T, m *kvtest.MinIO, loc *kv.S3Location, s *source) {
	t.Helper()
	c := m.Client(t)
	files := sourceFiles(t, s.Dir)
	if len(files) == 0 {
		t.Fatal("the source has no image files")
	}
	for p, want := range files {
		key := strings.TrimPrefix(p, "/")
		if loc.Prefix != "" {
			key = loc.Prefix + "/" + key
		}
		out, err := c.GetObject(&s3.GetObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(key)})
		if err != nil {
			t.Errorf("image file %s: not in the bucket: %v", p, err)
			continue
		}
		h := sha256.New()
		io.Copy(h, out.Body)
		out.Body.Close()
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			t.Errorf("image file %s: sha256 %s in the bucket, %s in the data dir", p, got, want)
		}
	}
	store, err := kv.NewS3(loc.KVConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"device.json", "ca.crt", "ca.key", "server.crt", "server.key", "admin.password", "identities.json"} {
		want, err := os.ReadFile(filepath.Join(s.Dir, k))
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := store.Get(context.Background(), k)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("state key %s: %d bytes, %v; want the data dir's %d bytes", k, len(got), err, len(want))
		}
	}
	b, _, err := store.Get(context.Background(), migrate.MarkerKey)
	if err != nil || !strings.Contains(string(b), `"finished"`) {
		t.Errorf("marker %s: %s, %v; want finished", migrate.MarkerKey, b, err)
	}
	dev, _, err := store.Get(context.Background(), kv.DeviceKey)
	if err != nil || string(dev) != "box1.internal" {
		t.Errorf("%s: %q, %v; want box1.internal", kv.DeviceKey, dev, err)
	}
}

func TestMigrate(t *testing.T) {
	m, loc := bucketOf(t, "site/a")
	s := makeSource(t, true)
	before := treeHash(t, s.Dir)
	var out bytes.Buffer
	rep, err := migrate.Run(ctxT(t), migrate.Options{DataDir: s.Dir, To: loc, Progress: &out})
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	t.Logf("first run: %+v\n%s", rep, out.String())
	files := sourceFiles(t, s.Dir)
	if rep.Objects != int64(len(files)) || rep.Skipped != 0 || rep.Resumed || rep.Again {
		t.Errorf("first run: %d copied, %d skipped (resumed %v, again %v); want %d copied", rep.Objects, rep.Skipped, rep.Resumed, rep.Again, len(files))
	}
	if len(rep.StateCopied) < 7 || len(rep.StateSkipped) != 0 {
		t.Errorf("state: copied %v, skipped %v", rep.StateCopied, rep.StateSkipped)
	}
	if rep.StateCopied[len(rep.StateCopied)-1] != "device.json" {
		t.Errorf("state copied in the order %v; want device.json last", rep.StateCopied)
	}
	checkBucket(t, m, loc, s)
	sameTree(t, before, treeHash(t, s.Dir))

	// Again: everything verified and skipped, nothing written.
	out.Reset()
	rep, err = migrate.Run(ctxT(t), migrate.Options{DataDir: s.Dir, To: loc, Progress: &out})
	if err != nil {
		t.Fatalf("second migrate: %v\n%s", err, out.String())
	}
	if !rep.Again || rep.Objects != 0 || rep.Skipped != int64(len(files)) || len(rep.StateCopied) != 0 {
		t.Errorf("second run: %+v; want everything skipped", rep)
	}
	sameTree(t, before, treeHash(t, s.Dir))

	// The data dir moved on (a token created since): the finished
	// migration's bucket is not overwritten, and the error names the key.
	if _, _, err := s.State.CreateToken(server.TokenOptions{TTL: time.Hour, Uses: 1, Role: server.RolePull}, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = migrate.Run(ctxT(t), migrate.Options{DataDir: s.Dir, To: loc})
	if !errors.Is(err, migrate.ErrConflict) || !strings.Contains(err.Error(), "tokens/") {
		t.Fatalf("migrate after the data dir changed: %v; want a conflict naming the new token's key", err)
	}
}

// sameTree fails t when two treeHash results differ, naming the lines.
func sameTree(t *testing.T, before, after string) {
	t.Helper()
	if before == after {
		t.Logf("data dir tree hash before and after: %s", before[:strings.IndexByte(before, '\n')])
		return
	}
	b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
	for _, l := range b[1:] {
		if !slices.Contains(a, l) {
			t.Errorf("before only: %s", l)
		}
	}
	for _, l := range a[1:] {
		if !slices.Contains(b, l) {
			t.Errorf("after only: %s", l)
		}
	}
	t.Fatal("the data dir changed")
}

// cancelAfter is a progress writer that cancels a context after n lines.
type cancelAfter struct {
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
	buf    bytes.Buffer
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return len(p), nil
}

// Interrupted mid-copy, then run again: it resumes, skips what it had
// copied (verified), and finishes; the data dir never changes.
func TestMigrateInterrupted(t *testing.T) {
	m, loc := bucketOf(t, "")
	s := makeSource(t, false)
	before := treeHash(t, s.Dir)
	ctx, cancel := context.WithCancel(ctxT(t))
	w := &cancelAfter{n: 8, cancel: cancel}
	rep, err := migrate.Run(ctx, migrate.Options{DataDir: s.Dir, To: loc, Progress: w, ProgressEvery: time.Nanosecond, Workers: 1})
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted migrate: %v; want cancelled\n%s", err, w.buf.String())
	}
	if rep == nil || rep.Objects == 0 {
		t.Fatalf("interrupted migrate copied nothing before it stopped: %+v", rep)
	}
	first := rep.Objects
	var out bytes.Buffer
	rep, err = migrate.Run(ctxT(t), migrate.Options{DataDir: s.Dir, To: loc, Progress: &out})
	if err != nil {
		t.Fatalf("resumed migrate: %v\n%s", err, out.String())
	}
	t.Logf("interrupted after %d objects; resumed: %+v\n%s", first, rep, out.String())
	total := int64(len(sourceFiles(t, s.Dir)))
	if !rep.Resumed || rep.Skipped < first || rep.Objects+rep.Skipped != total {
		t.Errorf("resumed: %+v; want resumed, at least %d skipped, %d in all", rep, first, total)
	}
	checkBucket(t, m, loc, s)
	sameTree(t, before, treeHash(t, s.Dir))
}

// A resumed migration replaces what differs from the data dir (the source
// is the truth until the migration finishes), and a blob in the bucket
// that does not match its digest is replaced whenever it is met.
func TestMigrateResumeReplaces(t *testing.T) {
	m, loc := bucketOf(t, "")
	s := makeSource(t, false)
	ctx, cancel := context.WithCancel(ctxT(t))
	w := &cancelAfter{n: 3, cancel: cancel}
	if _, err := migrate.Run(ctx, migrate.Options{DataDir: s.Dir, To: loc, Progress: w, ProgressEvery: time.Nanosecond, Workers: 1}); err == nil {
		t.Fatal("interrupted migrate: no error")
	}
	// Damage a blob the first run copied, and change a state file in
	// the source (the operator served it in between).
	c := m.Client(t)
	list, err := c.ListObjectsV2(&s3.ListObjectsV2Input{Bucket: aws.String(loc.Bucket), Prefix: aws.String("docker/registry/v2/blobs/")})
	if err != nil || len(list.Contents) == 0 {
		t.Fatalf("no blob in the bucket after the interrupted run: %v", err)
	}
	damaged := aws.StringValue(list.Contents[0].Key)
	if _, err := c.PutObject(&s3.PutObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(damaged), Body: strings.NewReader("not the blob")}); err != nil {
		t.Fatal(err)
	}
	store, _ := kv.NewS3(loc.KVConfig())
	if _, err := store.Put(context.Background(), "identities.json", []byte(`{"stale":true}`), ""); err != nil {
		t.Fatal(err)
	}
	rep, err := migrate.Run(ctxT(t), migrate.Options{DataDir: s.Dir, To: loc})
	if err != nil {
		t.Fatalf("resumed migrate: %v", err)
	}
	if rep.Replaced != 1 || len(rep.StateReplaced) != 1 || rep.StateReplaced[0] != "identities.json" {
		t.Errorf("resumed: %d replaced, state replaced %v; want the damaged blob %s and identities.json", rep.Replaced, rep.StateReplaced, damaged)
	}
	checkBucket(t, m, loc, s)
}
