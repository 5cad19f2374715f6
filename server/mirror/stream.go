package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// transfer is one blob moving from an upstream into one device
// repository. Whoever needs it (a sync run's or a pull-through's copy, a
// client's blob GET during a pull-through) finds it in Syncer.transfers by
// destination repository and digest, so that the upstream sends it once.
//
// A pull-through's transfer is spooled: the bytes the upstream sends are
// written to a file at the upstream's pace, and the upload into the
// device's storage and the clients' reads follow that file as it grows
// (one that falls behind reads from the file; nothing is held in
// memory). The last byte is handed out only once the whole blob arrived
// and its digest checked; a transfer that fails fails its readers, so
// that no client receives a short or wrong blob.
type transfer struct {
	key   string
	c     *client
	src   name.Reference // the upstream blob
	dst   name.Repository
	desc  v1.Descriptor
	spool string // directory of the spool file; "" without one

	once sync.Once
	done chan struct{} // closed when finished; then err is set
	err  error
	// copied: the upstream sent it (else the device had it)
	copied  bool
	counted atomic.Bool // a copy counted it as copied (its report's bytes)

	mu       sync.Mutex
	cond     *sync.Cond
	f        *os.File // the spool; nil without one
	n        int64    // bytes written to f
	verified bool     // f holds the whole blob, its digest checked
	fetchErr error    // the fetch into f failed
	end      bool     // finished (err says how)
	refs     int      // the transfer itself and each reader: the last one removes f
	unspool  func()   // gives back f's reservation (Destination.Reserve); nil: none
	wants    int      // pull-throughs that registered it and have not ended
}

// transferOf returns the transfer of blob desc into dst, registering it
// (not started) when none is under way.
func (s *Syncer) transferOf(c *client, src name.Repository, dst name.Repository, desc v1.Descriptor, spool bool) (*transfer, bool) {
	key := dst.RepositoryStr() + "@" + desc.Digest.String()
	t := &transfer{key: key, c: c, src: src.Digest(desc.Digest.String()), dst: dst, desc: desc, done: make(chan struct{}), refs: 1}
	t.cond = sync.NewCond(&t.mu)
	if spool {
		t.spool = s.dest.SpoolDir
		if t.spool == "" {
			t.spool = os.TempDir()
		}
	}
	got, loaded := s.transfers.LoadOrStore(key, t)
	if !loaded {
		s.refused.Delete(key) // a new pull tries again
	}
	return got.(*transfer), !loaded
}

// begin starts t unless it started (or was dropped): a spooled transfer
// runs on its own, outliving the request that started it (another client
// may follow it, and what arrives is kept); else in the caller, with
// ctx.
func (s *Syncer) begin(ctx context.Context, t *transfer, attempts int) {
	t.once.Do(func() {
		if t.spool == "" {
			s.runTransfer(ctx, t, attempts)
			return
		}
		if has, _ := s.dest.Has(ctx, t.dst.RepositoryStr(), false, t.desc.Digest); has {
			s.finish(t, nil) // readers are served from storage
			return
		}
		if s.dest.Reserve != nil {
			// Counted whole from the start, so that a burst of
			// pull-throughs cannot together take more than there is.
			rel, err := s.dest.Reserve("blob "+t.desc.Digest.String(), t.desc.Size)
			if err != nil {
				s.finish(t, fmt.Errorf("copying blob %s: %w", t.src, err))
				return
			}
			t.unspool = rel
		}
		f, err := os.CreateTemp(t.spool, "blob-*")
		if err != nil {
			if t.unspool != nil {
				t.unspool()
			}
			s.finish(t, fmt.Errorf("copying blob %s: creating its spool file: %w", t.src, err))
			return
		}
		t.f = f
		go s.runTransfer(context.WithoutCancel(ctx), t, attempts)
	})
}

// errDropped ends a transfer a pull-through registered and did not
// start: whoever needs the blob registers it again.
var errDropped = errors.New("transfer dropped before it started")

// drop ends t if it has not started.
func (s *Syncer) drop(t *transfer) {
	t.once.Do(func() { s.finish(t, errDropped) })
}

// want notes that a pull-through handed out a manifest naming t's blob:
// its clients may ask for it.
func (t *transfer) want() {
	t.mu.Lock()
	t.wants++
	t.mu.Unlock()
}

// unwant ends a pull-through's interest in t, dropping t when it was the
// last and t never started: a pull that fails must not drop a transfer
// whose blob another pull's client, given another manifest naming the same
// blob, is about to ask for.
func (s *Syncer) unwant(t *transfer) {
	t.mu.Lock()
	t.wants--
	last := t.wants == 0
	t.mu.Unlock()
	if last && t.spool != "" { // a sync run's own transfer is its to start
		s.drop(t)
	}
}

func (s *Syncer) runTransfer(ctx context.Context, t *transfer, attempts int) {
	if t.f == nil {
		if has, _ := s.dest.Has(ctx, t.dst.RepositoryStr(), false, t.desc.Digest); has {
			s.finish(t, nil)
			return
		}
	}
	err := s.retryFor(ctx, attempts, "copying blob "+t.src.String(), func() error {
		if t.f != nil {
			return s.spoolAndUpload(ctx, t)
		}
		l, err := t.c.puller.Layer(ctx, t.src.(name.Digest))
		if err != nil {
			return err
		}
		return s.pusher.Upload(ctx, t.dst, &sizedLayer{Layer: l, size: t.desc.Size, mt: t.desc.MediaType})
	})
	t.copied = err == nil
	s.finish(t, err)
}

// spoolAndUpload fetches t's blob into its spool file at the upstream's
// pace while the upload into the device follows the file as a reader
// like the clients' (storage does not slow the fetch down, nor the
// clients).
func (s *Syncer) spoolAndUpload(ctx context.Context, t *transfer) error {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l, err := t.c.puller.Layer(fctx, t.src.(name.Digest))
	if err != nil {
		return err
	}
	rc, err := l.Compressed() // checks the digest at its end (go-containerregistry)
	if err != nil {
		return err
	}
	t.mu.Lock()
	// A retry writes the blob from its start again: the same bytes at the
	// same offsets (a reader ahead waits for them).
	t.n, t.verified, t.fetchErr = 0, false, nil
	t.mu.Unlock()
	fetched := make(chan error, 1)
	go func() {
		defer rc.Close()
		fetched <- t.fill(rc)
	}()
	r := &spoolReader{t: t, ctx: ctx, stop: func() bool { return true }}
	err = s.pusher.Upload(ctx, t.dst, &sizedLayer{Layer: &readerLayer{Layer: l, r: r}, size: t.desc.Size, mt: t.desc.MediaType})
	if err != nil {
		cancel() // the fetch is of no use now
	}
	// The upstream's error says more than the upload's, unless the fetch
	// ended only because the upload failed.
	if ferr := <-fetched; ferr != nil && (err == nil || !errors.Is(ferr, context.Canceled)) {
		return ferr
	}
	return err
}

// fill writes what rc sends to the spool file, waking the readers; the
// last byte is theirs once the blob is whole and its digest checked.
func (t *transfer) fill(rc io.Reader) error {
	buf := make([]byte, 64<<10)
	var off int64
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if off+int64(n) > t.desc.Size {
				return t.failFetch(fmt.Errorf("copying blob %s: the upstream sent more than its %d bytes", t.src, t.desc.Size))
			}
			if _, werr := t.f.WriteAt(buf[:n], off); werr != nil {
				return t.failFetch(fmt.Errorf("copying blob %s: writing its spool file: %w", t.src, werr))
			}
			off += int64(n)
			t.mu.Lock()
			t.n = off
			t.cond.Broadcast()
			t.mu.Unlock()
		}
		if err == io.EOF {
			if off != t.desc.Size {
				return t.failFetch(fmt.Errorf("copying blob %s: the upstream sent %d of its %d bytes", t.src, off, t.desc.Size))
			}
			t.mu.Lock()
			t.verified = true
			t.cond.Broadcast()
			t.mu.Unlock()
			return nil
		}
		if err != nil {
			return t.failFetch(err)
		}
	}
}

func (t *transfer) failFetch(err error) error {
	t.mu.Lock()
	t.fetchErr = err
	t.cond.Broadcast()
	t.mu.Unlock()
	return err
}

// readerLayer is a layer whose bytes come from r (the spool).
type readerLayer struct {
	v1.Layer
	r io.Reader
}

func (l *readerLayer) Compressed() (io.ReadCloser, error) { return io.NopCloser(l.r), nil }

// finish records how t ended and wakes its readers; t leaves the
// registry, so that a later need of the blob finds it stored or fetches
// it again.
func (s *Syncer) finish(t *transfer, err error) {
	if errors.Is(err, ErrNoRoom) {
		s.refused.Store(t.key, err) // its clients are told why
	}
	s.transfers.CompareAndDelete(t.key, t)
	t.mu.Lock()
	t.err, t.end = err, true
	t.cond.Broadcast()
	t.mu.Unlock()
	close(t.done)
	t.release()
}

func (t *transfer) release() {
	t.mu.Lock()
	t.refs--
	last := t.refs == 0
	t.mu.Unlock()
	if last && t.f != nil {
		t.f.Close()
		os.Remove(t.f.Name())
		if t.unspool != nil {
			t.unspool()
		}
	}
}

// errTransferFailed is what a reader of a failed transfer gets.
var errTransferFailed = errors.New("the fetch from the upstream failed")

// spoolReader follows a transfer's spool file.
type spoolReader struct {
	t    *transfer
	ctx  context.Context
	off  int64
	stop func() bool
}

// Blob is a reader of the blob d of the device repository repo while a
// pull-through fetches it (size: its length), or nil when none does (the
// device serves it from storage, or says it lacks it). A reader of a
// fetch that fails returns an error: the client must be cut off. err
// (wrapping ErrNoRoom) says the device refused to fetch the blob.
func (s *Syncer) Blob(ctx context.Context, repo string, d v1.Hash) (io.ReadSeekCloser, int64, error) {
	key := repo + "@" + d.String()
	v, ok := s.transfers.Load(key)
	if !ok {
		if err, ok := s.refused.Load(key); ok {
			if has, _ := s.dest.Has(ctx, repo, false, d); !has {
				return nil, 0, err.(error)
			}
			s.refused.Delete(key)
		}
		return nil, 0, nil
	}
	t := v.(*transfer)
	s.begin(ctx, t, 1)
	if t.spool == "" {
		// A sync run's: wait for it, then serve what it stored.
		select {
		case <-t.done:
		case <-ctx.Done():
		}
		return nil, 0, nil
	}
	t.mu.Lock()
	if t.end && errors.Is(t.err, ErrNoRoom) {
		t.mu.Unlock()
		return nil, 0, t.err
	}
	if t.f == nil || (t.end && t.refs == 0) || (t.end && t.err != nil) {
		t.mu.Unlock()
		return nil, 0, nil
	}
	t.refs++
	t.mu.Unlock()
	r := &spoolReader{t: t, ctx: ctx}
	r.stop = context.AfterFunc(ctx, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	return r, t.desc.Size, nil
}

func (r *spoolReader) Read(p []byte) (int, error) {
	t := r.t
	size := t.desc.Size
	if r.off >= size {
		return 0, io.EOF
	}
	t.mu.Lock()
	var limit int64
	for {
		if err := r.ctx.Err(); err != nil {
			t.mu.Unlock()
			return 0, err
		}
		if t.end && t.err != nil {
			t.mu.Unlock()
			return 0, fmt.Errorf("%w: %v", errTransferFailed, t.err)
		}
		if t.fetchErr != nil {
			t.mu.Unlock()
			return 0, fmt.Errorf("%w: %v", errTransferFailed, t.fetchErr)
		}
		limit = t.n
		if !t.verified {
			limit = min(limit, size-1) // the last byte once the digest is checked
		}
		if limit > r.off {
			break
		}
		if t.end {
			t.mu.Unlock()
			return 0, fmt.Errorf("%w: it ended after %d of %d bytes", errTransferFailed, t.n, size)
		}
		t.cond.Wait()
	}
	t.mu.Unlock()
	if int64(len(p)) > limit-r.off {
		p = p[:limit-r.off]
	}
	n, err := t.f.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek moves the reader to off bytes from the blob's start (a client's
// Range): a Read waits for the bytes there to arrive.
func (r *spoolReader) Seek(off int64, whence int) (int64, error) {
	if whence != io.SeekStart || off < 0 || off > r.t.desc.Size {
		return r.off, fmt.Errorf("seeking blob %s: offset %d from %d out of its %d bytes", r.t.src, off, whence, r.t.desc.Size)
	}
	r.off = off
	return off, nil
}

func (r *spoolReader) Close() error {
	r.stop()
	r.t.release()
	return nil
}
