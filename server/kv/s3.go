package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/client"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/request"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"
)

// S3Config says where an S3 store keeps its objects.
type S3Config struct {
	Bucket string
	// KeyPrefix is put before every key ("" or ending in "/").
	KeyPrefix string
	// Endpoint is the S3 API's base URL (http or https; "" for AWS).
	Endpoint string
	Region   string
	// HTTPClient, when set, carries the requests (tests count them).
	HTTPClient *http.Client
	// CheckTimeout bounds Check (DefaultCheckTimeout if zero).
	CheckTimeout time.Duration
}

// S3 is a Store in an S3-compatible bucket: one object per key, versions
// are ETags, and every write is conditional: If-None-Match: * to create,
// If-Match: <etag> to replace or delete; 412 Precondition Failed (or 409,
// which AWS answers to concurrent conditional writes) is ErrConflict.
// Credentials come only from the standard AWS environment variables or the
// shared credentials file, and never appear in an error.
type S3 struct {
	c      *s3.S3
	cfg    S3Config
	target string // "bucket b at endpoint e", for errors
}

// NewS3 makes the client; it sends nothing (Check does).
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("creating S3 state store: no bucket")
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("creating S3 state store for bucket %s: no region", cfg.Bucket)
	}
	if cfg.KeyPrefix != "" && !strings.HasSuffix(cfg.KeyPrefix, "/") {
		return nil, fmt.Errorf("creating S3 state store: key prefix %q does not end in /", cfg.KeyPrefix)
	}
	// The session applies AWS_CA_BUNDLE to this client's transport (an
	// *http.Transport); a caller's client replaces it afterwards.
	hc := defaultHTTPClient()
	ac := aws.NewConfig().
		WithRegion(cfg.Region).
		WithS3ForcePathStyle(true).
		WithHTTPClient(hc).
		WithMaxRetries(2).
		WithCredentials(credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvProvider{},
			&credentials.SharedCredentialsProvider{},
		}))
	if cfg.Endpoint != "" {
		ac = ac.WithEndpoint(cfg.Endpoint).WithDisableSSL(strings.HasPrefix(cfg.Endpoint, "http://"))
	}
	// No session.NewSession: it reads ~/.aws/config and more; the
	// credentials and the endpoint above are the whole configuration.
	sess, err := session.NewSessionWithOptions(session.Options{Config: *ac, SharedConfigState: session.SharedConfigDisable})
	if err != nil {
		return nil, fmt.Errorf("creating S3 session: %w", err)
	}
	target := "bucket " + cfg.Bucket
	if cfg.Endpoint != "" {
		target += " at " + cfg.Endpoint
	}
	var over []*aws.Config
	if cfg.HTTPClient != nil {
		over = append(over, aws.NewConfig().WithHTTPClient(cfg.HTTPClient))
	}
	return &S3{c: s3.New(sess, over...), cfg: cfg, target: target}, nil
}

// defaultHTTPClient bounds connecting and waiting for an answer, so a
// dead endpoint fails a request instead of hanging it.
func defaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = 15 * time.Second
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr}
}

// objSuffix ends every object name (see ValidKey).
const objSuffix = "!"

func (s *S3) obj(key string) *string { return aws.String(s.cfg.KeyPrefix + key + objSuffix) }

// Object bodies: a format byte and the value; a deleted key whose delete
// was conditional is an empty object (a tombstone), because MinIO does not
// honour If-Match on DELETE: the delete is a conditional PUT of nothing.
// Get and List treat a tombstone as absent, and creating the key again
// replaces it by compare-and-swap. Unconditional deletes remove the object.
const formatV1 = 0x01

func encode(val []byte) []byte {
	b := make([]byte, 1+len(val))
	b[0] = formatV1
	copy(b[1:], val)
	return b
}

func statusOf(err error) (int, string) {
	var rf awserr.RequestFailure
	if errors.As(err, &rf) {
		return rf.StatusCode(), rf.Code()
	}
	return 0, ""
}

// fail wraps an S3 error: context errors stay visible to errors.Is, and a
// missing bucket is said in words.
func (s *S3) fail(doing, key string, err error) error {
	if st, code := statusOf(err); st == 404 && code == s3.ErrCodeNoSuchBucket {
		return fmt.Errorf("%s %q: %s does not exist: %w", doing, key, s.target, ErrNoBucket)
	}
	if c := cause(err); errors.Is(c, context.Canceled) || errors.Is(c, context.DeadlineExceeded) {
		return fmt.Errorf("%s %q in %s: %w", doing, key, s.target, c)
	}
	return fmt.Errorf("%s %q in %s: %w", doing, key, s.target, err)
}

// cause is the error under the SDK's wrapping (awserr has OrigErr, no Unwrap).
func cause(err error) error {
	for range 10 {
		ae, ok := err.(awserr.Error)
		if !ok || ae.OrigErr() == nil {
			return err
		}
		err = ae.OrigErr()
	}
	return err
}

// ErrNoBucket: the configured bucket does not exist.
var ErrNoBucket = errors.New("no such bucket")

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string) ([]byte, Version, error) {
	val, ver, _, err := s.get(ctx, key, "")
	return val, ver, err
}

// GetIfChanged implements Store: a GET with If-None-Match: ver, answered
// 304 with no body while key is unchanged.
func (s *S3) GetIfChanged(ctx context.Context, key string, ver Version) ([]byte, Version, bool, error) {
	if ver == "" {
		val, v, err := s.Get(ctx, key)
		return val, v, err == nil, err
	}
	return s.get(ctx, key, ver)
}

// maxPresize bounds the buffer a read allocates from the Content-Length it
// is told before any byte arrives.
const maxPresize = 64 << 20

func (s *S3) get(ctx context.Context, key string, ifNot Version) ([]byte, Version, bool, error) {
	if err := ValidKey(key); err != nil {
		return nil, "", false, err
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: s.obj(key)}
	if ifNot != "" {
		in.IfNoneMatch = aws.String(string(ifNot))
	}
	out, err := s.c.GetObjectWithContext(ctx, in)
	if err != nil {
		switch st, code := statusOf(err); {
		case st == http.StatusNotModified:
			return nil, ifNot, false, nil
		case st == 404 && code != s3.ErrCodeNoSuchBucket:
			return nil, "", false, fmt.Errorf("reading %q: %w", key, ErrNotFound)
		}
		return nil, "", false, s.fail("reading", key, err)
	}
	defer out.Body.Close()
	// Sized from Content-Length when it is sane: a value of megabytes (the
	// identity snapshot) read by io.ReadAll's doubling spent a fifth of
	// its read copying and clearing buffers.
	var buf bytes.Buffer
	if n := aws.Int64Value(out.ContentLength); n > 0 && n <= maxPresize {
		buf.Grow(int(n) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(out.Body); err != nil {
		return nil, "", false, s.fail("reading", key, err)
	}
	b := buf.Bytes()
	if len(b) == 0 {
		return nil, "", false, fmt.Errorf("reading %q: %w", key, ErrNotFound)
	}
	if b[0] != formatV1 {
		return nil, "", false, fmt.Errorf("reading %q in %s: unknown format %#x (written by a newer edgecrd?)", key, s.target, b[0])
	}
	return b[1:], Version(aws.StringValue(out.ETag)), true, nil
}

// precondition sets a conditional header on a request the SDK builds: its
// PutObjectInput and DeleteObjectInput (v1.55.5) have no IfMatch or
// IfNoneMatch field. Build runs before Sign, so the header is signed.
func precondition(req *request.Request, ifVer Version) {
	name, val := "If-None-Match", "*"
	if ifVer != "" {
		name, val = "If-Match", string(ifVer)
	}
	req.Handlers.Build.PushBack(func(r *request.Request) { r.HTTPRequest.Header.Set(name, val) })
}

// lost reports whether err is a lost precondition: 412, or 409
// (ConditionalRequestConflict: AWS's answer to a concurrent conditional
// write), or 404 to If-Match (the key is gone).
func lost(err error, ifVer Version) bool {
	st, code := statusOf(err)
	return st == http.StatusPreconditionFailed || st == http.StatusConflict ||
		(ifVer != "" && st == http.StatusNotFound && code != s3.ErrCodeNoSuchBucket)
}

func s3Conflict(doing, key string, ifVer Version) error {
	if ifVer == "" {
		return fmt.Errorf("%s %q create-only: it exists: %w", doing, key, ErrConflict)
	}
	return fmt.Errorf("%s %q: version is not %s: %w", doing, key, ifVer, ErrConflict)
}

// Put implements Store.
func (s *S3) Put(ctx context.Context, key string, val []byte, ifVer Version) (Version, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	body := encode(val)
	if ifVer != "" {
		return s.put(ctx, key, body, ifVer)
	}
	// Create-only: If-None-Match: *, or, over a tombstone, If-Match on it.
	for range 5 {
		v, err := s.put(ctx, key, body, "")
		if !errors.Is(err, ErrConflict) {
			return v, err
		}
		tomb, err := s.tombstone(ctx, key)
		switch {
		case err != nil:
			return "", err
		case tomb == "":
			return "", s3Conflict("writing", key, "")
		}
		v, err = s.put(ctx, key, body, tomb)
		if !errors.Is(err, ErrConflict) {
			return v, err
		}
		// Someone else replaced or removed the tombstone: look again.
	}
	return "", fmt.Errorf("writing %q create-only: the key keeps changing: %w", key, ErrConflict)
}

// tombstone is the ETag of key's object if it is a tombstone, "" if it
// holds a value, and "*" if there is no object (so a retry of
// If-None-Match: * may succeed).
func (s *S3) tombstone(ctx context.Context, key string) (Version, error) {
	out, err := s.c.HeadObjectWithContext(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: s.obj(key)})
	if err != nil {
		if st, code := statusOf(err); st == http.StatusNotFound && code != s3.ErrCodeNoSuchBucket {
			return "*", nil
		}
		return "", s.fail("writing", key, err)
	}
	if aws.Int64Value(out.ContentLength) == 0 {
		return Version(aws.StringValue(out.ETag)), nil
	}
	return "", nil
}

// put is one conditional PUT: If-Match: ifVer, or If-None-Match: * when
// ifVer is "" ("*" is "no object": If-None-Match: * too).
func (s *S3) put(ctx context.Context, key string, body []byte, ifVer Version) (Version, error) {
	if ifVer == "*" {
		ifVer = ""
	}
	req, out := s.c.PutObjectRequest(&s3.PutObjectInput{
		Bucket:      aws.String(s.cfg.Bucket),
		Key:         s.obj(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/octet-stream"),
	})
	req.SetContext(ctx)
	precondition(req, ifVer)
	// Never retried by the SDK: a retry of a write that landed but whose
	// answer was lost meets its own write and gets 412, which would read
	// as someone else's change, and the caller's CAS loop would apply its
	// change twice (spend two uses of a token for one join). The error
	// goes to the caller instead, who decides.
	req.Retryer = client.NoOpRetryer{}
	if err := req.Send(); err != nil {
		if lost(err, ifVer) {
			return "", s3Conflict("writing", key, ifVer)
		}
		return "", s.fail("writing", key, err)
	}
	return Version(aws.StringValue(out.ETag)), nil
}

// Delete implements Store: with ifVer, a conditional PUT of a tombstone;
// without, a DELETE.
func (s *S3) Delete(ctx context.Context, key string, ifVer Version) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if ifVer != "" {
		if _, err := s.put(ctx, key, nil, ifVer); err != nil {
			if errors.Is(err, ErrConflict) {
				return s3Conflict("deleting", key, ifVer)
			}
			return err
		}
		return nil
	}
	req, _ := s.c.DeleteObjectRequest(&s3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: s.obj(key)})
	req.SetContext(ctx)
	if err := req.Send(); err != nil {
		return s.fail("deleting", key, err)
	}
	return nil
}

// List implements Store (ListObjectsV2, up to 1000 keys a request).
func (s *S3) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	kvs, err := s.ListVersions(ctx, prefix, after, limit)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(kvs))
	for i, k := range kvs {
		keys[i] = k.Key
	}
	return keys, nil
}

// ListVersions implements VersionLister: List with each object's ETag,
// which is the version Get returns.
func (s *S3) ListVersions(ctx context.Context, prefix, after string, limit int) ([]KeyVersion, error) {
	if err := validPrefix(prefix); err != nil {
		return nil, err
	}
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(s.cfg.KeyPrefix + prefix)}
	if err := validPrefix(after); err != nil {
		return nil, fmt.Errorf("invalid list start %q", after)
	}
	if after != "" {
		in.StartAfter = aws.String(s.cfg.KeyPrefix + after + objSuffix)
	}
	var keys []KeyVersion
	for {
		in.MaxKeys = aws.Int64(int64(min(limit-len(keys), 1000)))
		out, err := s.c.ListObjectsV2WithContext(ctx, in)
		if err != nil {
			return nil, s.fail("listing", prefix, err)
		}
		for _, o := range out.Contents {
			name := strings.TrimPrefix(aws.StringValue(o.Key), s.cfg.KeyPrefix)
			if aws.Int64Value(o.Size) == 0 || !strings.HasSuffix(name, objSuffix) {
				continue // a tombstone, or not ours
			}
			if len(keys) < limit {
				keys = append(keys, KeyVersion{Key: strings.TrimSuffix(name, objSuffix), Version: Version(aws.StringValue(o.ETag))})
			}
		}
		if !aws.BoolValue(out.IsTruncated) || len(keys) >= limit || out.NextContinuationToken == nil {
			return keys, nil
		}
		in.ContinuationToken = out.NextContinuationToken
	}
}

var _ VersionLister = (*S3)(nil)

var _ Store = (*S3)(nil)
