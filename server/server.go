package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/edgecr/edgecr/server/mirror"
)

// Options configure a running server.
type Options struct {
	Listen string // registry listener, e.g. ":31001"
	Logger *slog.Logger

	// CertLifetime and RenewCheck are the serving certificate's lifetime and
	// how often its expiry is checked; zero means the defaults (a year, an
	// hour). Tests shorten them.
	CertLifetime time.Duration
	RenewCheck   time.Duration

	// FailureBurst and FailureEvery throttle failed logins per source
	// address; zero means 10 attempts, then one every 6 s.
	FailureBurst int
	FailureEvery time.Duration

	// GCSchedule is when serve collects garbage in-process; the zero
	// value is off. GCGrace (zero: DefaultGCGrace) and GCDeleteUntagged
	// configure those runs.
	GCSchedule       GCSchedule
	GCGrace          time.Duration
	GCDeleteUntagged bool

	// TouchInterval is how stale a blob's mtime may get before a request
	// that uses it refreshes it (zero: a minute); GC grace periods must be
	// well above it. UsageRefresh is how often storage usage is recounted
	// (zero: 10 minutes).
	TouchInterval time.Duration
	UsageRefresh  time.Duration

	// UploadsPerIdentity and UploadsTotal bound the open upload sessions
	// of one identity and of all together; UploadIdle is how long a
	// session may go without a request before it is removed with its
	// data. Zero means the defaults (DefaultUploadsPerIdentity, …).
	UploadsPerIdentity int
	UploadsTotal       int
	UploadIdle         time.Duration

	// MaxConnsPerAddr and MaxInFlightPerAddr bound one source address's
	// open registry connections and requests in flight; zero means
	// DefaultMaxConnsPerAddr and DefaultMaxInFlightPerAddr.
	MaxConnsPerAddr    int
	MaxInFlightPerAddr int

	// DistDir holds the agent binaries served under /dist/ to the install
	// scripts (edgecr-<os>-<arch>[.exe], docker-credential-edgecr-…);
	// empty or missing serves the scripts only.
	DistDir string

	// UIListen is the web UI's HTTPS listener, e.g. "127.0.0.1:8443";
	// empty serves no UI. UIIdleTimeout logs a UI session out after that
	// long without a request (zero: DefaultUIIdleTimeout).
	UIListen      string
	UIIdleTimeout time.Duration
	// UIOptional serves the registry without the UI when UIListen cannot
	// be bound (a default address someone else uses), with a warning.
	UIOptional bool

	// Version is what the UI shows as the running version.
	Version string

	// ReplicaIPs are the addresses clients reach this replica at, when the
	// state is on a bucket (State.S3() != nil; replicas.go): registered in
	// the shared state, named in the shared serving certificate, handed to
	// joining clients. Required there; unused on a local data dir.
	// ReplicaID names the replica (default: DefaultReplicaID(ReplicaIPs)).
	// ReplicaPoll is how often it heartbeats and polls the certificate
	// (zero: DefaultReplicaPoll).
	ReplicaIPs  []net.IP
	ReplicaID   string
	ReplicaPoll time.Duration

	// ImageIndexAge bounds how old the web UI's image list may be before
	// a view refreshes it: what other replicas on the bucket wrote shows
	// within it (zero: DefaultImageIndexAge). This server's own writes
	// show at once.
	ImageIndexAge time.Duration

	// Sync, when set, is the sync configuration (server/mirror): serve runs
	// its rules on their schedules and its pull-through prefixes fetch on
	// demand. SyncRate is the default bandwidth per upstream in bytes per
	// second (<= 0: none).
	Sync     *mirror.Config
	SyncRate int64
	// syncRunOnly: RunSync's server, which serves no pull-through.
	syncRunOnly bool

	Now func() time.Time
}

// Server is a running edgecrd: the registry with its auth, metrics and
// health endpoints on one TLS listener.
type Server struct {
	state *State
	opts  Options
	log   *slog.Logger
	cert  atomic.Pointer[tls.Certificate]
	ln    net.Listener
	http  *http.Server
	uiLn  net.Listener // nil: no UI

	mirrorSrv *http.Server // nil: no mirror listener (mirrorlisten.go)
	mirrorLn  net.Listener
	uiSrv     *http.Server
	authn     *Authenticator
	dist      *dist
	seen      *lastSeen
	usage     *usage
	gc        gcTracker
	sync      *syncer // nil: no sync configuration

	images   *imageStorage // where images are: local disk or a bucket
	imgIndex *imageIndex   // the web UI's list of images (imageindex.go)
	uses     *sharedUse    // on a bucket: use records for the collector; nil on local disk

	replicas *replicaSet  // nil on a local data dir
	rcert    *replicaCert // the shared serving certificate; with replicas

	sessions *uploadSessions
	conns    *connLimitListener // s.ln, bounding connections per source address
	loops    sync.WaitGroup     // background work Serve waits for: garbage collection
}

// New prepares a server on an initialised state and binds its listener, so
// that the caller knows the address before Serve.
func New(ctx context.Context, st *State, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CertLifetime == 0 {
		o.CertLifetime = serverLifetime
	}
	if o.RenewCheck == 0 {
		o.RenewCheck = time.Hour
	}
	if o.FailureBurst == 0 {
		o.FailureBurst = 10
	}
	if o.FailureEvery == 0 {
		o.FailureEvery = 6 * time.Second
	}
	if o.Listen == "" {
		o.Listen = fmt.Sprintf(":%d", DefaultPort)
	}
	if o.GCGrace == 0 {
		o.GCGrace = DefaultGCGrace
	}
	if o.TouchInterval == 0 {
		o.TouchInterval = time.Minute
	}
	if o.UsageRefresh == 0 {
		o.UsageRefresh = 10 * time.Minute
	}
	if o.UploadsPerIdentity == 0 {
		o.UploadsPerIdentity = DefaultUploadsPerIdentity
	}
	if o.UploadsTotal == 0 {
		o.UploadsTotal = DefaultUploadsTotal
	}
	if o.UploadIdle == 0 {
		o.UploadIdle = DefaultUploadIdle
	}
	if o.MaxConnsPerAddr == 0 {
		o.MaxConnsPerAddr = DefaultMaxConnsPerAddr
	}
	if o.MaxInFlightPerAddr == 0 {
		o.MaxInFlightPerAddr = DefaultMaxInFlightPerAddr
	}
	if o.UIIdleTimeout == 0 {
		o.UIIdleTimeout = DefaultUIIdleTimeout
	}
	if o.ReplicaPoll == 0 {
		o.ReplicaPoll = DefaultReplicaPoll
	}
	s := &Server{state: st, opts: o, log: o.Logger}

	if st.S3() != nil && st.KV() != nil {
		if err := s.initReplica(); err != nil {
			return nil, err
		}
	} else {
		cert, err := s.renew()
		if err != nil {
			return nil, err
		}
		s.cert.Store(cert)
	}

	authn, err := NewAuthenticator(st.Identities())
	if err != nil {
		return nil, err
	}
	s.authn = authn
	images, err := openImageStorage(ctx, st, s.log, o.Now)
	if err != nil {
		return nil, err
	}
	s.images = images
	s.imgIndex = newImageIndex(ctx, st.imageStorage, o.ImageIndexAge, o.Now, s.log)
	app, err := newRegistryAppOn(ctx, s.log, images, st.Device.HTTPSecret)
	if err != nil {
		return nil, err
	}
	s.usage = newUsageOn(images, st.Device.QuotaBytes, o.Now, s.log)
	m := newMetrics(s.usage)
	if err := s.gc.init(st, m); err != nil {
		return nil, err
	}
	s.sessions = newUploadSessions(o.UploadsPerIdentity, o.UploadsTotal, o.UploadIdle, o.Now)
	images.scanUploads(ctx, s.sessions.found)
	refIdx := &referrersIndex{d: images.d, counted: s.usage.add}
	s.imgIndex.counted = s.usage.add // its listings rebuild referrers indexes too
	fresh := &freshness{root: images.root, st: images, every: o.TouchInterval, now: o.Now}
	if !images.local() {
		s.uses = newSharedUse(images.store, o.TouchInterval, o.Now)
		fresh.uses = s.uses
	}
	guard := &storageGuard{
		fresh:    fresh,
		usage:    s.usage,
		sessions: s.sessions,
		router:   v2.Router(),
		metrics:  m,
		log:      s.log,
		next:     app,
		health:   images.health,

		referrers: refIdx,
		index:     s.imgIndex,

		serveFiles: images.local(),
	}
	if !images.local() {
		guard.blobDriver = images.d
	}
	var storage http.Handler = guard
	if images.health != nil {
		storage = &storeDown{h: images.health, next: guard} // s3store.go
	}
	limiter := newFailureLimiter(o.FailureEvery, o.FailureBurst)
	s.seen = newLastSeen(st, s.log)
	ac := &accessControl{
		auth:    authn,
		limiter: limiter,
		metrics: m,
		log:     s.log,
		router:  v2.Router(),
		now:     o.Now,
		seen:    s.seen.mark,
		next:    storage,

		referrers: &referrersHandler{idx: refIdx, log: s.log},
	}
	if o.Sync != nil {
		if s.sync, err = newSyncer(ctx, st, s.images, o.Sync, o.SyncRate, ac, guard, m, s.log, o.syncRunOnly); err != nil {
			return nil, err
		}
		ac.fetch, ac.fetchBlob = s.sync.fetch, s.sync.fetchBlob
	}
	// The join API has its own allowance: bad join attempts must not lock
	// an address out of the registry, nor registry failures out of joining.
	api := &joinAPI{state: st, auth: authn, limiter: newFailureLimiter(o.FailureEvery, o.FailureBurst), metrics: m, log: s.log, now: o.Now}
	if s.replicas != nil {
		api.replicas = s.replicas.liveAddresses
	}

	dl, err := newDist(o.DistDir, s.log, o.Now())
	if err != nil {
		return nil, err
	}
	s.dist = dl

	mux := http.NewServeMux()
	mux.Handle("/v2/", ac)
	api.register(mux)
	dl.register(mux)
	mux.Handle("/metrics", named("metrics", m.handler()))
	mux.Handle("/healthz", named("healthz", http.HandlerFunc(s.healthz)))
	mux.Handle("/", named("other", http.NotFoundHandler()))

	// The registry listener's limits (listenlimits.go): per-address
	// connections (Serve) and requests in flight, header size and time,
	// body progress; no deadline on a whole body, so that a slow push
	// finishes.
	s.http = &http.Server{
		Handler: limitInFlight(newAddrCounter(o.MaxInFlightPerAddr),
			requireBodyProgress(bodyProgressWindow, minBodyProgress, m.observe(s.accessLog(rawV2(mux, ac))))),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.cert.Load(), nil
			},
		},
	}
	if o.UIListen != "" {
		u, err := newUI(s)
		if err != nil {
			return nil, err
		}
		s.uiSrv = &http.Server{
			Handler:           u.handler(),
			ReadHeaderTimeout: 30 * time.Second,
			ReadTimeout:       time.Minute,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			TLSConfig:         s.http.TLSConfig.Clone(),
		}
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", o.Listen, err)
	}
	s.ln = ln
	s.conns = newConnLimitListener(ln, o.MaxConnsPerAddr)
	s.http.ConnState = s.conns.connState
	if s.uiSrv != nil {
		uln, err := net.Listen("tcp", o.UIListen)
		switch {
		case err != nil && o.UIOptional:
			s.log.Warn("web UI not served: its address is not available; the registry runs without it (give --ui-listen another address, or off)",
				"addr", o.UIListen, "err", err)
			s.uiSrv = nil
		case err != nil:
			ln.Close()
			return nil, fmt.Errorf("listening on %s for the web UI: %w", o.UIListen, err)
		default:
			s.uiLn = uln
		}
	}
	if err := s.listenMirror(); err != nil {
		ln.Close()
		if s.uiLn != nil {
			s.uiLn.Close()
		}
		return nil, err
	}
	if s.replicas != nil {
		// Registered once the port is known; served with a certificate
		// that names this replica.
		if err := s.startReplica(ctx); err != nil {
			ln.Close()
			if s.uiLn != nil {
				s.uiLn.Close()
			}
			if s.mirrorLn != nil {
				s.mirrorLn.Close()
			}
			return nil, err
		}
	}
	return s, nil
}

// UIAddr is the bound web UI address, nil when the UI is off.
func (s *Server) UIAddr() net.Addr {
	if s.uiLn == nil {
		return nil
	}
	return s.uiLn.Addr()
}

// rawV2 sends every /v2 path to the access layer before ServeMux can clean
// it: ServeMux answers "/v2/../x" with a redirect, and the client must get
// NAME_INVALID instead.
func rawV2(mux *http.ServeMux, v2h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/") {
			v2h.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func named(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		routeInfoFrom(r.Context()).route = route
		h.ServeHTTP(w, r)
	})
}

// Addr is the bound listener address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve runs until ctx ends, then shuts down gracefully: in-flight requests
// get up to 30 s to finish.
func (s *Server) Serve(ctx context.Context) error {
	// The background loops end with ctx; an early return (the listener
	// failed) must end them too, before the deferred Wait below.
	ctx, cancel := context.WithCancel(ctx)
	if s.sync != nil {
		defer s.sync.closeSpool()
	}
	if s.images.local() {
		s.startRepair(ctx) // before the first request: it leaves what this process writes alone
	} else {
		// On a bucket there is no start-up repair: what it mends comes
		// from file systems (a rename or an fsync a power cut undid), and
		// it would judge tags other replicas are writing. The tag order
		// and hiding (durablefs.go) apply on the bucket too.
		go s.images.health.probeLoop(ctx)
		go s.uses.watch(ctx)
		go s.usage.flushLoop(ctx)
	}
	if s.state.loc != nil {
		// Replicas: identities are polled, never read per request.
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.authn.Run(ctx, AuthPollInterval, func(err error) { s.log.Warn("checking identities for changes", "err", err) })
		}()
		// The snapshot a listing's first read on another machine takes
		// the shards from (identitysnapshot.go).
		s.state.SetLogger(s.log)
		s.loops.Add(1)
		go func() { defer s.loops.Done(); s.state.RunIdentitySnapshot(ctx) }()
	}
	errc := make(chan error, 1)
	go func() { errc <- s.http.ServeTLS(s.conns, "", "") }()
	if s.uiSrv != nil {
		go func() {
			// The UI failing is no reason to stop serving images.
			if err := s.uiSrv.ServeTLS(s.uiLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("web UI stopped", "err", err)
			}
		}()
		s.log.Info("web UI listening", "addr", s.uiLn.Addr().String())
	}
	if s.mirrorSrv != nil {
		go func() {
			if err := s.mirrorSrv.ServeTLS(s.mirrorLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("mirror listener stopped", "err", err)
			}
		}()
		s.log.Info("mirror listening", "addr", s.mirrorLn.Addr().String())
	}
	if s.replicas != nil {
		s.loops.Add(1)
		go s.replicaLoop(ctx)
	} else {
		go s.renewLoop(ctx)
	}
	go s.flushLoop(ctx)
	go s.storageLoop(ctx)
	if s.uiSrv != nil {
		s.imgIndex.changedAll() // the Images page's first view need not wait for it
	}
	go s.uploadLoop(ctx)
	if !s.opts.GCSchedule.Off() {
		s.loops.Add(1)
		go s.gcLoop(ctx)
	}
	if s.sync != nil {
		s.loops.Add(1)
		go func() { defer s.loops.Done(); s.sync.loop(ctx, s.opts.Now) }()
	}
	defer s.loops.Wait()
	defer s.seen.flush()
	defer cancel()
	s.log.Info("registry listening", "addr", s.ln.Addr().String(), "endpoint", s.state.Device.Endpoint())
	select {
	case err := <-errc:
		if s.uiSrv != nil {
			s.uiSrv.Close()
		}
		if s.mirrorSrv != nil {
			s.mirrorSrv.Close()
		}
		return fmt.Errorf("serving registry: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	sctx, cancelShutdown := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelShutdown()
	if s.uiSrv != nil {
		// Let a revoke or a tag deletion in progress finish.
		if err := s.uiSrv.Shutdown(sctx); err != nil {
			s.log.Warn("shutting down the web UI", "err", err)
		}
	}
	if s.mirrorSrv != nil {
		if err := s.mirrorSrv.Shutdown(sctx); err != nil {
			s.log.Warn("shutting down the mirror listener", "err", err)
		}
	}
	if err := s.http.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving registry: %w", err)
	}
	return nil
}

func (s *Server) flushLoop(ctx context.Context) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.seen.flush()
		}
	}
}

func (s *Server) renewLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.RenewCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cert, err := s.renew()
		if err != nil {
			s.log.Error("renewing server certificate", "err", err)
			continue
		}
		if old := s.cert.Swap(cert); old == nil || !old.Leaf.Equal(cert.Leaf) {
			s.log.Info("server certificate renewed", "notAfter", cert.Leaf.NotAfter)
		}
	}
}

// renew reissues the serving certificate under the device CA when it is
// close to expiry, under the data dir's lock (another process may be
// initialising).
func (s *Server) renew() (*tls.Certificate, error) {
	if s.state.loc == nil {
		// On a bucket there is no lock to take: the pair is written by
		// compare-and-swap (serverpair.go).
		unlock, err := lockFile(filepath.Join(s.state.Dir, initLock))
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	// Judge the certificate against device.json as it is now: `edgecrd init
	// --ip …` may have changed the IPs (and reissued) while serve runs, and
	// the copy loaded at start would undo that.
	cur, err := s.current()
	if err != nil {
		return nil, err
	}
	cert, err := cur.ensureServerCert(s.opts.Now(), s.opts.CertLifetime)
	if err != nil {
		return nil, err
	}
	// Send the CA with the leaf: a joining client checks the chain against
	// the pin in its token before it has the CA anywhere else.
	cert.Certificate = append(cert.Certificate, s.state.CA.Cert.Raw)
	return cert, nil
}

// current is the state with device.json as it is now in the store:
// `edgecrd init` may have changed the name or IPs since serve read it.
func (s *Server) current() (*State, error) {
	cur := &State{Dir: s.state.Dir, CA: s.state.CA, kv: s.state.KV(), loc: s.state.loc}
	b, _, ok, err := cur.get(deviceFile)
	if err != nil {
		return nil, fmt.Errorf("reading device state: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("reading device state: %s missing", cur.where(deviceFile))
	}
	if err := cur.parseDevice(b); err != nil {
		return nil, err
	}
	return cur, nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if !s.images.local() {
		// On a bucket: what the last calls said, else a probe (one HEAD).
		msg := s.images.health.status()
		if msg == "" {
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			err := s.images.probe(ctx)
			cancel()
			if err != nil {
				msg = "object store unavailable: " + storeReason(err)
			}
		}
		if msg != "" {
			w.Header().Set("Retry-After", strconv.Itoa(storeRetryAfter))
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
		return
	}
	if _, err := os.Stat(s.state.StorageDir()); err != nil {
		http.Error(w, "storage unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "ok\n")
}

// accessLog writes one structured line per request. It logs the user name
// the request authenticated as, never a header value.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		i := routeInfoFrom(r.Context())
		cw, _ := w.(*countingWriter)
		status, out := 0, int64(0)
		if cw != nil {
			status, out = cw.status, cw.n
		}
		s.log.Info("request", "method", r.Method, "route", i.route, "repo", i.repo, "user", i.user,
			"status", status, "bytesOut", out, "remote", remoteHost(r), "duration", time.Since(start))
	})
}
