package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path"
	"testing"
	"time"

	v2 "github.com/distribution/distribution/v3/registry/api/v2"
)

// benchGuard is the server's manifest path without TLS and auth: the
// storage guard (quota, freshness, the referrers hook) over distribution
// on edgecrfs in a temp dir.
func benchGuard(b *testing.B) (*storageGuard, string) {
	b.Helper()
	b.Setenv("OTEL_TRACES_EXPORTER", "none")
	root := b.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	app, err := newRegistryApp(context.Background(), log, root, "bench-secret")
	if err != nil {
		b.Fatal(err)
	}
	u := newUsage(root, 0, time.Now)
	return &storageGuard{
		fresh:     &freshness{root: root, every: time.Minute, now: time.Now},
		usage:     u,
		router:    v2.Router(),
		metrics:   newMetrics(u),
		log:       log,
		next:      app,
		referrers: &referrersIndex{d: openDurableFS(root)},
	}, root
}

func benchDo(b *testing.B, h http.Handler, method, p string, body []byte, ctype string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, p, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req = req.WithContext(withRouteInfo(req.Context(), &routeInfo{route: v2.RouteNameManifest}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// BenchmarkManifestPut: a manifest PUT with a subject against one without
// (same size; the empty config pushed once). The target is a ratio
// of at most 1.1.
func BenchmarkManifestPut(b *testing.B) {
	g, _ := benchGuard(b)
	cfg := []byte("{}")
	cd, _ := digestOf(cfg, "sha256")
	rec := benchDo(b, g, "POST", "/v2/bench/app/blobs/uploads/", nil, "")
	loc := rec.Header().Get("Location")
	if rec.Code != http.StatusAccepted {
		b.Fatalf("POST upload: %d", rec.Code)
	}
	u := loc[len("http://example.com"):]
	req := httptest.NewRequest("PUT", u+"&digest="+cd.String(), bytes.NewReader(cfg))
	r2 := httptest.NewRecorder()
	g.next.ServeHTTP(r2, req)
	if r2.Code != http.StatusCreated {
		b.Fatalf("PUT config: %d %s", r2.Code, r2.Body)
	}
	subject, _ := digestOf([]byte("subject"), "sha256")
	for _, withSubject := range []bool{false, true} {
		b.Run(fmt.Sprintf("subject=%v", withSubject), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				m := map[string]any{
					"schemaVersion": 2, "mediaType": ociManifestType, "artifactType": "application/vnd.example.sig",
					"config": map[string]any{"mediaType": emptyConfigType, "digest": cd.String(), "size": 2},
					"layers": []any{}, "annotations": map[string]string{"n": fmt.Sprint(withSubject, i)},
				}
				if withSubject {
					m["subject"] = map[string]any{"mediaType": ociManifestType, "digest": subject.String(), "size": 7}
				} else {
					m["subject_"] = map[string]any{"mediaType": ociManifestType, "digest": subject.String(), "size": 7}
				}
				body, _ := json.Marshal(m)
				d, _ := digestOf(body, "sha256")
				if rec := benchDo(b, g, "PUT", "/v2/bench/app/manifests/"+d.String(), body, ociManifestType); rec.Code != http.StatusCreated {
					b.Fatalf("PUT: %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkReferrersList: the referrers API for a subject with 1,000
// referrers (server side: index read, one revision stat per entry).
func BenchmarkReferrersList(b *testing.B) {
	ctx := context.Background()
	root := b.TempDir()
	idx := &referrersIndex{d: openDurableFS(root)}
	subject, _ := digestOf([]byte("subject"), "sha256")
	fast := &referrersIndex{d: newDurableFS(openDurableFS(root).StorageDriver, root)}
	fast.d.(*durableFS).sync = func(string) error { return nil } // setting up 1,000 entries need not fsync
	for i := range 1000 {
		d, _ := digestOf([]byte(fmt.Sprint(i)), "sha256")
		if err := fast.add(ctx, "bench/app", subject, ociDescriptor{MediaType: ociManifestType, Digest: d.String(), Size: 500, ArtifactType: "application/vnd.example.sig", Annotations: map[string]string{"i": fmt.Sprint(i)}}); err != nil {
			b.Fatal(err)
		}
		if err := fast.d.PutContent(ctx, path.Join(revisionLinkDir("bench/app", d), "link"), []byte(d)); err != nil {
			b.Fatal(err)
		}
	}
	h := &referrersHandler{idx: idx}
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v2/bench/app/referrers/"+subject.String(), nil))
		if rec.Code != 200 || bytes.Count(rec.Body.Bytes(), []byte(`"digest"`)) != 1000 {
			b.Fatalf("%d, %d descriptors", rec.Code, bytes.Count(rec.Body.Bytes(), []byte(`"digest"`)))
		}
	}
}
