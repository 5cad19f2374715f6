package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/gorilla/mux"
)

// maxManifestSize is the largest manifest the registry stores (the size
// distribution reads; the OCI spec asks registries to accept at least 4 MiB).
const maxManifestSize = 4 << 20

// routeInfo carries what the access layer learnt about a request to the
// metrics and the access log.
type routeInfo struct {
	route, repo, user string
	status            int
	bytesIn, bytesOut int64
}

type routeInfoKey struct{}

func withRouteInfo(ctx context.Context, i *routeInfo) context.Context {
	return context.WithValue(ctx, routeInfoKey{}, i)
}

func routeInfoFrom(ctx context.Context) *routeInfo {
	if i, ok := ctx.Value(routeInfoKey{}).(*routeInfo); ok {
		return i
	}
	return &routeInfo{}
}

// verifier checks a user name and secret.
type verifier interface {
	Verify(user, secret string) (Role, error)
}

// accessControl authenticates every /v2/ request with HTTP Basic auth and
// authorises it by role before distribution sees it. It sits outside
// distribution's own access-controller hook because that hook can only
// answer 401 or 400, and a pull-only identity pushing must get 403 DENIED.
type accessControl struct {
	auth    verifier
	limiter *failureLimiter
	metrics *metrics
	log     *slog.Logger
	router  *mux.Router
	now     func() time.Time
	seen    func(id string, now time.Time) // successful authentications, for "last seen"
	next    http.Handler

	// referrers serves the OCI referrers API (referrers.go), a route
	// distribution's router does not know; nil: not served.
	referrers http.Handler

	// fetch is the pull-through hook (sync.go): called before a manifest
	// pull, it brings the manifest from its upstream when the device lacks
	// it; false means it wrote the refusal. nil: no pull-through.
	fetch func(w http.ResponseWriter, r *http.Request, repo, ref string) bool
	// fetchBlob is its hook before a blob pull: it serves a blob a
	// pull-through is fetching as it arrives; false means it answered.
	fetchBlob func(w http.ResponseWriter, r *http.Request, repo, digest string) bool
}

const challenge = `Basic realm="edgecr"`

func (a *accessControl) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := routeInfoFrom(r.Context())
	var match mux.RouteMatch
	matched := a.router.Match(r, &match) && match.Route != nil
	if matched {
		info.route = match.Route.GetName()
		info.repo = match.Vars["name"]
	} else {
		info.route = "v2-unmatched"
	}
	serve := a.next
	if repo, _, ok := matchReferrersPath(r.URL.Path); !matched && ok && a.referrers != nil {
		matched, serve = true, a.referrers
		info.route, info.repo = routeReferrers, repo
	}

	role, ok := a.authenticate(w, r, info)
	if !ok {
		return
	}

	name := info.repo
	if !matched {
		// distribution would answer a bare 404; say what is wrong instead.
		name, _ = repoNameOf(r.URL.Path)
	}
	if name != "" {
		if err := validRepoName(name); err != nil {
			writeError(w, errcode.ErrorCodeNameInvalid.WithMessage(err.Error()))
			return
		}
	}
	if !matched {
		a.next.ServeHTTP(w, r)
		return
	}

	need := requiredRole(info.route, r.Method)
	if !role.Allows(need) {
		a.log.Info("access denied", "user", info.user, "role", role, "need", need, "route", info.route, "repo", info.repo, "method", r.Method)
		writeError(w, errcode.ErrorCodeDenied.WithMessage(fmt.Sprintf("%s access to %s requires the %s role", strings.ToLower(r.Method), describe(info), need)))
		return
	}
	if a.fetch != nil && info.route == v2.RouteNameManifest && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		!a.fetch(w, r, info.repo, match.Vars["reference"]) {
		return
	}
	if a.fetchBlob != nil && info.route == v2.RouteNameBlob && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		!a.fetchBlob(w, r, info.repo, match.Vars["digest"]) {
		return
	}
	if info.route == v2.RouteNameManifest && r.Method == http.MethodPut && r.ContentLength > maxManifestSize {
		writeErrorStatus(w, http.StatusRequestEntityTooLarge, errcode.ErrorCodeManifestInvalid.WithMessage(
			fmt.Sprintf("manifest of %d bytes exceeds the %d byte limit", r.ContentLength, maxManifestSize)))
		return
	}
	serve.ServeHTTP(w, r)
}

func describe(i *routeInfo) string {
	if i.repo != "" {
		return "repository " + i.repo
	}
	return i.route
}

// authenticate returns the caller's role, or writes the refusal.
func (a *accessControl) authenticate(w http.ResponseWriter, r *http.Request, info *routeInfo) (Role, bool) {
	if isInternal(r.Context()) { // the server's own request (sync.go); never one from the network
		info.user = SyncUser
		return RolePush, true
	}
	if m := mirrorFrom(r.Context()); m != nil {
		return a.authorizeMirror(w, r, m, info)
	}
	addr := remoteHost(r)
	now := a.now()
	h := r.Header.Get("Authorization")
	if h == "" {
		w.Header().Set("WWW-Authenticate", challenge)
		refuseUnread(w, r, http.StatusUnauthorized, errcode.ErrorCodeUnauthorized.WithMessage("authentication required"))
		return "", false
	}
	// Credentials are checked first: a valid 256-bit secret is not what
	// brute force looks like, and refusing it would let anyone who shares
	// an address (NAT, the device itself) lock legitimate clients out.
	// Failures spend the address's allowance; past it, 429.
	user, secret, ok := r.BasicAuth()
	var role Role
	var err error
	if !ok {
		err = errMalformedAuth
	} else {
		role, err = a.auth.Verify(user, secret)
	}
	if err != nil {
		reason := failureReason(err)
		if errors.Is(err, ErrIdentitiesUnchecked) {
			// Not the client's failure: no allowance spent, no 401. The
			// store's address and error go to the log only.
			a.log.Warn("verifying credentials", "err", err)
			w.Header().Set("Retry-After", strconv.Itoa(storeRetryAfter))
			refuseUnread(w, r, http.StatusServiceUnavailable, errcode.ErrorCodeUnavailable.WithMessage(ErrIdentitiesUnchecked.Error()+" (the object store does not answer); retry later"))
			return "", false
		}
		if reason == "internal" {
			a.log.Error("verifying credentials", "err", err)
			refuseUnread(w, r, http.StatusInternalServerError, errcode.ErrorCodeUnknown.WithMessage("verifying credentials failed"))
			return "", false
		}
		if allowed, wait := a.limiter.take(addr, now); !allowed {
			a.metrics.authFailures.WithLabelValues("throttled").Inc()
			w.Header().Set("Retry-After", retryAfter(wait))
			refuseUnread(w, r, http.StatusTooManyRequests, errcode.ErrorCodeTooManyRequests.WithMessage("too many failed authentication attempts from "+addr+"; retry later"))
			return "", false
		}
		a.metrics.authFailures.WithLabelValues(reason).Inc()
		// user is what the client claimed; the secret is never logged.
		a.log.Warn("authentication failed", "remote", addr, "user", user, "reason", err.Error())
		w.Header().Set("WWW-Authenticate", challenge)
		refuseUnread(w, r, http.StatusUnauthorized, errcode.ErrorCodeUnauthorized.WithMessage("authentication failed: "+publicReason(err)))
		return "", false
	}
	info.user = user
	if a.seen != nil {
		a.seen(user, now)
	}
	return role, true
}

var errMalformedAuth = errors.New("malformed Authorization header (want Basic)")

// publicReason is what a refused client is told: an unknown user and a
// wrong password read the same, so that a 401 does not tell which names
// exist (the log and the metrics keep the difference). A revoked
// credential is only reported to whoever holds its secret.
func publicReason(err error) string {
	if errors.Is(err, ErrUnknownUser) || errors.Is(err, ErrBadSecret) {
		return "wrong user name or secret"
	}
	return err.Error()
}

func failureReason(err error) string {
	switch {
	case errors.Is(err, errMalformedAuth):
		return "malformed"
	case errors.Is(err, ErrUnknownUser):
		return "unknown_user"
	case errors.Is(err, ErrBadSecret):
		return "bad_secret"
	case errors.Is(err, ErrRevoked):
		return "revoked"
	}
	return "internal"
}

// requiredRole maps a distribution route and method to the least role that
// may use it.
func requiredRole(route, method string) Role {
	switch route {
	case v2.RouteNameBase:
		return RolePull
	case v2.RouteNameCatalog:
		return RoleAdmin
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return RolePull
	case http.MethodDelete:
		if route == v2.RouteNameBlobUploadChunk || route == v2.RouteNameBlobUpload {
			return RolePush // cancelling one's own upload
		}
		return RoleAdmin
	default:
		return RolePush
	}
}

// repoNameRE is the OCI distribution-spec repository name grammar. It is
// stricter than distribution's router, which lets an upper-case first
// component through as if it were a registry host name.
var repoNameRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

func validRepoName(name string) error {
	if len(name) > 255 || !repoNameRE.MatchString(name) {
		return fmt.Errorf("invalid repository name %q: lower-case letters, digits and separators only, components joined by /", name)
	}
	return nil
}

// repoNameOf extracts the repository part of a /v2/<name>/{manifests,blobs,tags,referrers}/ path.
func repoNameOf(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", false
	}
	best := -1
	for _, kw := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(rest, kw); i > best {
			best = i
		}
	}
	if best <= 0 {
		return "", false
	}
	return rest[:best], true
}

func remoteHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

func writeError(w http.ResponseWriter, e errcode.Error) {
	writeErrorStatus(w, e.Code.Descriptor().HTTPStatusCode, e)
}

func writeErrorStatus(w http.ResponseWriter, status int, e errcode.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.WriteHeader(status)
	_ = errcodeJSON(w, e)
}

func errcodeJSON(w http.ResponseWriter, e errcode.Error) error {
	// errcode.ServeJSON would write the header itself; we already did.
	return jsonEncode(w, errcode.Errors{e})
}
