package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"

	"github.com/edgecr/edgecr/server/mirror"
)

// MirrorUser is the user name the access log gives a request the mirror
// listener served: clients' runtimes send a mirror none of the device's
// credentials.
const MirrorUser = "mirror"

type mirrorKey struct{}

// withMirror marks the requests of a connection to the mirror listener.
func withMirror(ctx context.Context, m *mirror.Mirror) context.Context {
	return context.WithValue(ctx, mirrorKey{}, m)
}

func mirrorFrom(ctx context.Context) *mirror.Mirror {
	m, _ := ctx.Value(mirrorKey{}).(*mirror.Mirror)
	return m
}

// authorizeMirror decides a request to the mirror listener. Whatever it
// carries in Authorization is neither checked nor logged (Docker sends
// the mirrored registry's credentials, when it has them): the listener
// serves anyone, read-only, the repositories the sync configuration
// lists, and nothing else. The version check (GET /v2/) answers 200
// without a challenge, since a client that got a Basic challenge and has
// no credentials for it gives the mirror up.
func (a *accessControl) authorizeMirror(w http.ResponseWriter, r *http.Request, m *mirror.Mirror, info *routeInfo) (Role, bool) {
	info.user = MirrorUser
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, errcode.ErrorCodeDenied.WithMessage(
			fmt.Sprintf("the mirror port serves pulls only (%s refused); push to the registry port with a credential", r.Method)))
		return "", false
	}
	switch {
	case info.route == v2.RouteNameBase:
		return RolePull, true
	case info.repo == "" || info.route == v2.RouteNameCatalog:
		writeError(w, errcode.ErrorCodeDenied.WithMessage("the mirror port serves only the repositories the device mirrors"))
		return "", false
	}
	ns := r.URL.Query().Get("ns") // containerd says which registry it mirrors
	if !m.Serves(ns, info.repo) {
		if ns == "" {
			ns = "docker.io"
		}
		a.log.Info("mirror request refused", "remote", remoteHost(r), "ns", ns, "repo", info.repo)
		writeError(w, errcode.ErrorCodeDenied.WithMessage(
			fmt.Sprintf("this device does not mirror %s/%s (the sync configuration's mirror.registries lists what it does)", ns, info.repo)))
		return "", false
	}
	return RolePull, true
}

// listenMirror opens the mirror listener of o.Sync, if it has one.
func (s *Server) listenMirror() error {
	if s.opts.Sync == nil || s.opts.Sync.Mirror == nil {
		return nil
	}
	m := s.opts.Sync.Mirror
	ln, err := net.Listen("tcp", m.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s for the mirror: %w", m.Listen, err)
	}
	conns := newConnLimitListener(ln, s.opts.MaxConnsPerAddr)
	s.mirrorLn = conns
	next := s.http.Handler
	s.mirrorSrv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !mirrorPath(r.URL.Path) {
				http.NotFound(w, r)
				return
			}
			next.ServeHTTP(w, r)
		}),
		ConnState:         conns.connState,
		ReadHeaderTimeout: s.http.ReadHeaderTimeout,
		IdleTimeout:       s.http.IdleTimeout,
		MaxHeaderBytes:    s.http.MaxHeaderBytes,
		Protocols:         s.http.Protocols,
		ErrorLog:          s.http.ErrorLog,
		TLSConfig:         s.http.TLSConfig.Clone(),
		ConnContext:       func(ctx context.Context, _ net.Conn) context.Context { return withMirror(ctx, m) },
	}
	return nil
}

// MirrorAddr is the bound mirror listener address, nil without one.
func (s *Server) MirrorAddr() net.Addr {
	if s.mirrorLn == nil {
		return nil
	}
	return s.mirrorLn.Addr()
}

// mirrorPath reports whether p is a registry path (the mirror listener
// answers nothing else).
func mirrorPath(p string) bool { return p == "/v2" || strings.HasPrefix(p, "/v2/") }
