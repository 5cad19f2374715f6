package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws" // the "s3" driver images on a bucket use

	"github.com/edgecr/edgecr/server/kv"
)

// Images on a bucket (issue 12): distribution's s3-aws driver, with what
// the filesystem side gets from durablefs.go and the kernel supplied here.
//
//   - Tag order and hiding (durableFS with no root): a tag's current link is
//     written last and removed first, and a tag without one is not listed,
//     whatever the backend. There are no directories and nothing to fsync:
//     an object PUT is durable when S3 acknowledges it.
//   - Bounded calls (boundedDriver): the s3 driver makes its AWS session
//     with the SDK's default HTTP client, which has no timeout, so a store
//     that stops answering would hang a request forever. Every metadata
//     call gets storeOpTimeout; a read or write stream is cancelled when it
//     makes no progress for storeIdleTimeout.
//   - Health (storeHealth): a call that fails for another reason than "not
//     found" marks the store down; from then on registry requests are
//     answered 503 at once, /healthz says why, and a probe every second
//     brings the store back when it answers again.
//
// Distribution and edgecrd's own code (GC, quota, uploads, referrers) share
// one driver instance: it reaches distribution through the configuration
// (sharedDriverName), which carries the instance itself.

// sharedDriverName is the storage driver name under which an already-built
// driver is handed to distribution: its "instance" parameter.
const sharedDriverName = "edgecr-instance"

func init() {
	factory.Register(sharedDriverName, sharedDriverFactory{})
}

type sharedDriverFactory struct{}

func (sharedDriverFactory) Create(_ context.Context, parameters map[string]any) (storagedriver.StorageDriver, error) {
	d, ok := parameters["instance"].(storagedriver.StorageDriver)
	if !ok {
		return nil, fmt.Errorf("configuring %s storage: no driver instance (it is set in code, not in a configuration file)", sharedDriverName)
	}
	return d, nil
}

// Timeouts of calls to the object store (variables: tests shorten them).
var (
	// storeOpTimeout bounds a metadata call (stat, list, small get and
	// put, delete, move): the longest a request waits on a store that
	// accepts connections and does not answer.
	storeOpTimeout = 30 * time.Second
	// storeIdleTimeout cancels a blob stream that moved no byte for that long.
	storeIdleTimeout = 30 * time.Second
	// storeCopyRate is the slowest server-side copy a move waits for
	// (bytes per second): a 1 GiB blob's commit may take 30 s + 17 min.
	storeCopyRate = int64(1 << 20)
	// storeProbeEvery is how often a store marked down is probed.
	storeProbeEvery = time.Second
)

// openS3Driver makes the driver for images in the bucket loc names, with
// the bounds and health tracking above.
// It returns the s3 driver itself too, for probes that must not change
// the health they measure.
func openS3Driver(ctx context.Context, loc *kv.S3Location, h *storeHealth) (d, raw storagedriver.StorageDriver, err error) {
	raw, err = factory.Create(ctx, "s3", loc.DriverParameters())
	if err != nil {
		return nil, nil, fmt.Errorf("opening image storage in %s: %w", loc, err)
	}
	return newDurableFS(&boundedDriver{StorageDriver: raw, h: h}, ""), raw, nil
}

// storeHealth is what the server knows about the object store: up, or
// down since a time with the error that said so.
type storeHealth struct {
	mu     sync.Mutex
	down   bool
	since  time.Time
	reason string
	now    func() time.Time
	log    *slog.Logger
	probe  func(ctx context.Context) error // nil: nothing brings it back but a successful call
	wake   chan struct{}
}

func newStoreHealth(now func() time.Time, log *slog.Logger) *storeHealth {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &storeHealth{now: now, log: log, wake: make(chan struct{}, 1)}
}

// storeFailure reports whether err says the store is unavailable (no
// connection, no answer within the bound, a 5xx), rather than that a path
// does not exist, a request was wrong, or the caller gave up.
func storeFailure(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for e := err; e != nil; {
		if de, ok := e.(storagedriver.Error); ok && de.Detail != nil {
			e = de.Detail
			continue
		}
		if rf, ok := e.(interface{ StatusCode() int }); ok && rf.StatusCode() >= 500 {
			return true
		}
		if ae, ok := e.(interface {
			Code() string
			OrigErr() error
		}); ok {
			switch ae.Code() {
			case "RequestError", "RequestCanceled", "RequestTimeout", "SerializationError":
				return true
			}
			if ae.OrigErr() != nil {
				e = ae.OrigErr()
				continue
			}
		}
		e = errors.Unwrap(e)
	}
	return false
}

// observe records the outcome of one call.
func (h *storeHealth) observe(ctx context.Context, err error) {
	if h == nil {
		return
	}
	if err == nil {
		h.up()
		return
	}
	if !storeFailure(ctx, err) {
		return
	}
	h.mu.Lock()
	was := h.down
	if !was {
		h.down, h.since = true, h.now()
	}
	h.reason = storeReason(err)
	h.mu.Unlock()
	if !was {
		h.log.Error("object store unavailable: registry requests are answered 503 until it answers again", "err", h.reason)
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

func (h *storeHealth) up() {
	h.mu.Lock()
	was, since := h.down, h.since
	h.down = false
	h.mu.Unlock()
	if was {
		h.log.Info("object store available again", "downFor", h.now().Sub(since).Round(time.Millisecond))
	}
}

// status is "" when the store is up, else why not.
func (h *storeHealth) status() string {
	if h == nil {
		return ""
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down {
		return ""
	}
	return fmt.Sprintf("object store unavailable since %s: %s", h.since.UTC().Format(time.RFC3339), h.reason)
}

// storeReason is err shortened for a client or a log: the SDK's errors
// carry request ids and, for a refused connection, the whole URL.
// The cause a client can act on is the network error underneath (a
// refused connection, a timeout) or the store's answer; the rest is left
// to the log.
func storeReason(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	for e := err; e != nil; {
		if de, ok := e.(storagedriver.Error); ok && de.Detail != nil {
			e = de.Detail
			continue
		}
		if oe, ok := e.(interface{ OrigErr() error }); ok && oe.OrigErr() != nil {
			if errors.As(oe.OrigErr(), &op) {
				return op.Error()
			}
			e = oe.OrigErr()
			continue
		}
		e = errors.Unwrap(e)
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "RequestCanceled") {
		return "no answer within " + storeOpTimeout.String()
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// probeLoop probes a store marked down every storeProbeEvery until ctx ends.
func (h *storeHealth) probeLoop(ctx context.Context) {
	t := time.NewTicker(storeProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.wake:
			continue
		}
		if h.status() == "" || h.probe == nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, storeProbeEvery*3)
		err := h.probe(pctx)
		cancel()
		if err == nil {
			h.up()
		}
	}
}

// storeDown answers registry requests with 503 while the object store is
// down, and turns distribution's 500 for a request that failed on the
// store into the same 503.
type storeDown struct {
	h    *storeHealth
	next http.Handler
}

// storeRetryAfter is the Retry-After of a 503 for a store that is down.
const storeRetryAfter = 5

func (s *storeDown) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if msg := s.h.status(); msg != "" {
		writeStoreDown(w, msg)
		return
	}
	sw := &storeDownWriter{ResponseWriter: w, h: s.h}
	s.next.ServeHTTP(sw, r)
}

func writeStoreDown(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(storeRetryAfter))
	writeErrorStatus(w, http.StatusServiceUnavailable, errcode.ErrorCodeUnavailable.WithMessage(msg+"; retry later"))
}

// storeDownWriter replaces a 500 with the 503 when the store went down
// during the request.
type storeDownWriter struct {
	http.ResponseWriter
	h        *storeHealth
	status   int
	replaced bool
}

func (s *storeDownWriter) WriteHeader(code int) {
	if s.status != 0 {
		return
	}
	s.status = code
	if code == http.StatusInternalServerError {
		if msg := s.h.status(); msg != "" {
			s.replaced = true
			h := s.Header()
			h.Del("Content-Length")
			h.Del("Content-Type")
			writeStoreDown(s.ResponseWriter, msg)
			return
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *storeDownWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.replaced {
		return len(p), nil
	}
	return s.ResponseWriter.Write(p)
}

func (s *storeDownWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// boundedDriver bounds every call to an object store driver in time and
// reports its outcome to the store's health.
type boundedDriver struct {
	storagedriver.StorageDriver
	h *storeHealth
}

func (b *boundedDriver) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, storeOpTimeout)
}

func (b *boundedDriver) GetContent(ctx context.Context, p string) ([]byte, error) {
	c, cancel := b.op(ctx)
	defer cancel()
	v, err := b.StorageDriver.GetContent(c, p)
	b.h.observe(ctx, err)
	return v, err
}

func (b *boundedDriver) PutContent(ctx context.Context, p string, content []byte) error {
	c, cancel := b.op(ctx)
	defer cancel()
	err := b.StorageDriver.PutContent(c, p, content)
	b.h.observe(ctx, err)
	return err
}

func (b *boundedDriver) Stat(ctx context.Context, p string) (storagedriver.FileInfo, error) {
	c, cancel := b.op(ctx)
	defer cancel()
	fi, err := b.StorageDriver.Stat(c, p)
	b.h.observe(ctx, err)
	return fi, err
}

func (b *boundedDriver) List(ctx context.Context, p string) ([]string, error) {
	c, cancel := b.op(ctx)
	defer cancel()
	v, err := b.StorageDriver.List(c, p)
	b.h.observe(ctx, err)
	return v, err
}

// Move is a copy on S3 (multipart for a large blob: an upload's commit
// copies the whole blob), so its bound grows with the size: storeOpTimeout
// plus one second per storeCopyRate bytes.
func (b *boundedDriver) Move(ctx context.Context, from, to string) error {
	bound := storeOpTimeout
	if fi, err := b.Stat(ctx, from); err == nil && !fi.IsDir() {
		bound += time.Duration(fi.Size()/storeCopyRate) * time.Second
	}
	c, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	err := b.StorageDriver.Move(c, from, to)
	b.h.observe(ctx, err)
	return err
}

func (b *boundedDriver) Delete(ctx context.Context, p string) error {
	c, cancel := b.op(ctx)
	defer cancel()
	err := b.StorageDriver.Delete(c, p)
	b.h.observe(ctx, err)
	return err
}

// Walk is bounded per listing, through List (the s3 driver's own Walk
// would run every page under one context).
func (b *boundedDriver) Walk(ctx context.Context, p string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	c, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := newIdleCancel(cancel, storeOpTimeout)
	defer idle.stop()
	err := b.StorageDriver.Walk(c, p, func(fi storagedriver.FileInfo) error {
		idle.progress()
		return f(fi)
	}, options...)
	b.h.observe(ctx, err)
	return err
}

func (b *boundedDriver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	c, cancel := context.WithCancel(ctx)
	idle := newIdleCancel(cancel, storeOpTimeout) // until the answer's headers, then between reads
	rc, err := b.StorageDriver.Reader(c, p, offset)
	b.h.observe(ctx, err)
	if err != nil {
		idle.stop()
		cancel()
		return nil, err
	}
	idle.reset(storeIdleTimeout)
	return &idleReader{ReadCloser: rc, idle: idle, cancel: cancel, ctx: ctx, h: b.h}, nil
}

func (b *boundedDriver) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	c, cancel := context.WithCancel(ctx)
	idle := newIdleCancel(cancel, storeOpTimeout)
	w, err := b.StorageDriver.Writer(c, p, append)
	b.h.observe(ctx, err)
	if err != nil {
		idle.stop()
		cancel()
		return nil, err
	}
	idle.reset(storeIdleTimeout)
	return &idleWriter{FileWriter: w, idle: idle, cancel: cancel, ctx: ctx, h: b.h}, nil
}

// idleCancel cancels a context when progress() is not called for a while.
type idleCancel struct {
	mu sync.Mutex
	t  *time.Timer
	d  time.Duration
}

func newIdleCancel(cancel context.CancelFunc, d time.Duration) *idleCancel {
	return &idleCancel{t: time.AfterFunc(d, cancel), d: d}
}

func (i *idleCancel) progress() {
	i.mu.Lock()
	i.t.Reset(i.d)
	i.mu.Unlock()
}

func (i *idleCancel) reset(d time.Duration) {
	i.mu.Lock()
	i.d = d
	i.t.Reset(d)
	i.mu.Unlock()
}

func (i *idleCancel) stop() { i.t.Stop() }

type idleReader struct {
	io.ReadCloser
	idle   *idleCancel
	cancel context.CancelFunc
	ctx    context.Context
	h      *storeHealth
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.idle.progress()
	}
	if err != nil && err != io.EOF {
		r.h.observe(r.ctx, err)
	}
	return n, err
}

func (r *idleReader) Close() error {
	r.idle.stop()
	err := r.ReadCloser.Close()
	r.cancel()
	return err
}

type idleWriter struct {
	storagedriver.FileWriter
	idle   *idleCancel
	cancel context.CancelFunc
	ctx    context.Context
	h      *storeHealth
}

func (w *idleWriter) Write(p []byte) (int, error) {
	w.idle.progress()
	n, err := w.FileWriter.Write(p)
	w.idle.progress()
	w.h.observe(w.ctx, err)
	return n, err
}

func (w *idleWriter) Commit(ctx context.Context) error {
	w.idle.reset(storeOpTimeout) // completing a multipart upload is one call
	err := w.FileWriter.Commit(ctx)
	w.h.observe(w.ctx, err)
	return err
}

func (w *idleWriter) Cancel(ctx context.Context) error {
	w.idle.reset(storeOpTimeout)
	return w.FileWriter.Cancel(ctx)
}

func (w *idleWriter) Close() error {
	w.idle.reset(storeOpTimeout)
	err := w.FileWriter.Close()
	w.h.observe(w.ctx, err)
	w.idle.stop()
	w.cancel()
	return err
}
