package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// benchRegistry is a running server holding repos repositories of tags
// tags each (distinct images per repository), for the UI's page costs.
func benchRegistry(b *testing.B, repos, tags int) *Server {
	b.Helper()
	st, err := Ensure(b.TempDir(), testOptions("bench"), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, st, Options{Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	pw, _ := st.AdminPassword()
	ts := &testServer{state: st, srv: srv, addr: srv.Addr().String()}
	opts := []remote.Option{remote.WithAuth(&authn.Basic{Username: AdminUser, Password: pw}), remote.WithTransport(ts.transport())}
	for r := range repos {
		img, err := random.Image(256, 3)
		if err != nil {
			b.Fatal(err)
		}
		for tg := range tags {
			ref, err := name.ParseReference(fmt.Sprintf("%s/bench/repo%03d:t%02d", ts.addr, r, tg))
			if err != nil {
				b.Fatal(err)
			}
			if err := remote.Write(ref, img, opts...); err != nil {
				b.Fatalf("pushing %s: %v", ref, err)
			}
		}
	}
	return srv
}

// The Images page for a small registry (20 × 5) and a large one for an edge
// device (100 × 10): since issue 14 a view reads the image index
// (imageindex.go), built by the first; BenchmarkUIImagesPageFleet has
// 10,000 tags.
func BenchmarkUIImagesPage(b *testing.B) {
	for _, size := range []struct{ repos, tags int }{{20, 5}, {100, 10}} {
		b.Run(fmt.Sprintf("repos=%d/tags=%d", size.repos, size.tags), func(b *testing.B) {
			benchPage(b, benchRegistry(b, size.repos, size.tags), "/images")
		})
	}
}

// The device page is what an admin opens first.
func BenchmarkUIDevicePage(b *testing.B) {
	benchPage(b, benchRegistry(b, 1, 1), "/")
}

// benchPage measures GET page through the UI's handler, logged in.
func benchPage(b *testing.B, srv *Server, page string) {
	u, err := newUI(srv)
	if err != nil {
		b.Fatal(err)
	}
	h := u.handler()
	_, cookie := u.sessions.create(AdminUser)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, page, nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s: %d", page, rec.Code)
		}
	}
}
