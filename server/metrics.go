package server

import (
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the Prometheus series of one server. They live in their own
// registry so that several servers (tests) can run in one process.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	bytesIn      *prometheus.CounterVec
	bytesOut     *prometheus.CounterVec
	authFailures *prometheus.CounterVec

	quotaRejections prometheus.Counter
	gcRuns          *prometheus.CounterVec
	gcReclaimed     prometheus.Counter
	gcBlobs         prometheus.Counter
	gcManifests     prometheus.Counter
	gcLastRun       prometheus.Gauge
	gcLastDuration  prometheus.Gauge
	gcLastReclaimed prometheus.Gauge
}

// newMetrics registers the series; storage usage and quota are read from u.
func newMetrics(u *usage) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecr_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "edgecr_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecr_http_request_bytes_total", Help: "Request body bytes received, by route.",
		}, []string{"route"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecr_http_response_bytes_total", Help: "Response body bytes sent, by route.",
		}, []string{"route"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgecr_auth_failures_total", Help: "Rejected authentication attempts by reason.",
		}, []string{"reason"}),
	}
	m.quotaRejections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgecr_storage_quota_rejections_total", Help: "Uploads refused because they would exceed the storage quota.",
	})
	m.gcRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgecr_gc_runs_total", Help: "Garbage collections (in serve or by edgecrd gc), by result.",
	}, []string{"result"})
	m.gcReclaimed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgecr_gc_reclaimed_bytes_total", Help: "Bytes garbage collection removed.",
	})
	m.gcBlobs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgecr_gc_deleted_blobs_total", Help: "Blobs garbage collection removed.",
	})
	m.gcManifests = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgecr_gc_deleted_manifests_total", Help: "Untagged manifests garbage collection removed.",
	})
	m.gcLastRun = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "edgecr_gc_last_run_timestamp_seconds", Help: "When the last garbage collection finished (Unix time; 0: never).",
	})
	m.gcLastDuration = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "edgecr_gc_last_duration_seconds", Help: "How long the last garbage collection took.",
	})
	m.gcLastReclaimed = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "edgecr_gc_last_reclaimed_bytes", Help: "Bytes the last garbage collection removed.",
	})
	m.reg.MustRegister(m.requests, m.latency, m.bytesIn, m.bytesOut, m.authFailures,
		m.quotaRejections, m.gcRuns, m.gcReclaimed, m.gcBlobs, m.gcManifests, m.gcLastRun, m.gcLastDuration, m.gcLastReclaimed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecr_storage_bytes", Help: "Bytes used by the registry's storage directory.",
		}, func() float64 { return float64(u.used()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecr_storage_quota_bytes", Help: "The storage quota in bytes (0: none).",
		}, func() float64 { return float64(u.quota) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// observe wraps next and records one request under the route that the
// handler names by calling setRoute (through the request's routeInfo).
func (m *metrics) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &routeInfo{route: "other"}
		cw := &countingWriter{ResponseWriter: w}
		cr := &countingReader{ReadCloser: r.Body}
		r.Body = cr
		r = r.WithContext(withRouteInfo(r.Context(), info))
		next.ServeHTTP(cw, r)
		status := cw.status
		if status == 0 {
			status = http.StatusOK
		}
		info.status = status
		m.requests.WithLabelValues(info.route, r.Method, strconv.Itoa(status)).Inc()
		m.latency.WithLabelValues(info.route, r.Method).Observe(time.Since(start).Seconds())
		if cr.n > 0 {
			m.bytesIn.WithLabelValues(info.route).Add(float64(cr.n))
		}
		if cw.n > 0 {
			m.bytesOut.WithLabelValues(info.route).Add(float64(cw.n))
		}
		info.bytesIn, info.bytesOut = cr.n, cw.n
	})
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

type countingReader struct {
	io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

// DirSize is the storage root's usage as the quota counts it: the total
// size of the regular files under root, and the disk taken by upload
// sessions (entrySize); entries that vanish during the walk are skipped.
func DirSize(root string) int64 {
	var total int64
	_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		total += entrySize(p, e)
		return nil
	})
	return total
}
