package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Join API paths, on the registry listener outside /v2/.
const (
	APICA       = "/edgecr/v1/ca"
	APIJoin     = "/edgecr/v1/join"
	APIClientMe = "/edgecr/v1/clients/self"
	APIReplicas = "/edgecr/v1/replicas"
)

// JoinRequest is the body of POST /edgecr/v1/join.
type JoinRequest struct {
	Token string `json:"token"`
	Name  string `json:"name"`
}

// JoinResponse is what a client receives for a valid token.
type JoinResponse struct {
	RegistryHost string   `json:"registryHost"`
	Port         int      `json:"port"`
	IPs          []string `json:"ips"`
	// Replicas are the addresses of every live replica of a device on a
	// bucket (issue 12), the answering one's first; absent for a single
	// node. Clients map the registry host to each of them.
	Replicas []string `json:"replicas,omitempty"`
	CAPEM    string   `json:"caPEM"`
	ClientID string   `json:"clientID"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	Role     Role     `json:"role"`
}

// APIError is the error body of the join API.
type APIError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type joinAPI struct {
	state   *State
	auth    verifier
	limiter *failureLimiter
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time
	// replicas are the live replicas' addresses; nil for a single node.
	replicas func() []string
}

func (j *joinAPI) register(mux *http.ServeMux) {
	mux.Handle("GET "+APICA, named("api-ca", http.HandlerFunc(j.ca)))
	mux.Handle("POST "+APIJoin, named("api-join", http.HandlerFunc(j.join)))
	mux.Handle("DELETE "+APIClientMe, named("api-leave", http.HandlerFunc(j.leave)))
	if j.replicas != nil {
		// Only a device with replicas answers: a single node's 404 tells
		// a client to keep the one address it has.
		mux.Handle("GET "+APIReplicas, named("api-replicas", http.HandlerFunc(j.listReplicas)))
	}
}

// ReplicasResponse is the body of GET /edgecr/v1/replicas: the live
// replicas' addresses, as a join answers them. They are no secret (the
// serving certificate names them), so no credential is asked.
type ReplicasResponse struct {
	Replicas []string `json:"replicas"`
}

func (j *joinAPI) listReplicas(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ReplicasResponse{Replicas: j.replicas()})
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	var e APIError
	e.Error.Code, e.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}

func (j *joinAPI) ca(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(j.state.CA.PEM)
}

// joinQueueWait bounds how long an attempt waits for the attempts of its
// address in flight to settle (failureLimiter.begin) before it is told to
// come back.
const joinQueueWait = 30 * time.Second

// attempt admits one unauthenticated attempt of addr (failureLimiter.begin)
// and answers 429 when addr has spent its allowance on failures, or 503
// when its attempts in flight did not settle in time; the caller settles
// the ticket: failed only for a wrong, expired or used-up token or a
// wrong credential.
func (j *joinAPI) attempt(w http.ResponseWriter, r *http.Request, addr string) (*attemptTicket, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), joinQueueWait)
	defer cancel()
	t, err := j.limiter.begin(ctx, addr, j.now)
	if err == nil {
		return t, true
	}
	// Read what the client sent before refusing: an HTTP/2 stream whose
	// body was left unread kept graceful shutdown waiting.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 16<<10))
	var th *errThrottled
	switch {
	case errors.As(err, &th):
		j.metrics.authFailures.WithLabelValues("throttled").Inc()
		w.Header().Set("Retry-After", retryAfter(th.wait))
		apiError(w, http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "too many failed attempts from "+addr+"; retry later")
	case r.Context().Err() != nil:
		// The client went away while it waited: nobody to answer.
	default:
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusServiceUnavailable, "BUSY", fmt.Sprintf("the attempts in flight from %s did not finish within %s; retry", addr, joinQueueWait))
	}
	return nil, false
}

// retryAfter is a Retry-After value: whole seconds, rounded up, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

func (j *joinAPI) join(w http.ResponseWriter, r *http.Request) {
	addr := remoteHost(r)
	// The body is read before the attempt holds any allowance: a client
	// that sends it slowly holds nothing while it does.
	var req JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", "decoding join request: "+err.Error())
		return
	}
	t, ok := j.attempt(w, r, addr)
	if !ok {
		return
	}
	failed := false
	defer func() { t.settle(failed) }()
	p, err := ParseToken(req.Token)
	if err != nil {
		failed = true
		j.fail(w, addr, "token_malformed", http.StatusBadRequest, "BAD_REQUEST", err)
		return
	}
	if err := CheckClientName(req.Name); err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	name := CleanClientName(req.Name)
	res, err := j.state.Redeem(p, name, j.now())
	switch {
	case errors.Is(err, ErrTokenExpired):
		failed = true
		j.fail(w, addr, "token_expired", http.StatusUnauthorized, "TOKEN_EXPIRED", err)
		return
	case errors.Is(err, ErrTokenUsedUp):
		failed = true
		j.fail(w, addr, "token_used_up", http.StatusUnauthorized, "TOKEN_USED_UP", err)
		return
	case errors.Is(err, ErrTokenInvalid):
		failed = true
		j.fail(w, addr, "token_invalid", http.StatusUnauthorized, "TOKEN_INVALID", err)
		return
	case err != nil && j.state.S3() != nil && storeFailure(r.Context(), err):
		// The bucket does not answer: a 503 the agent waits out
		// (Retry-After), not an error it gives up on.
		j.log.Error("redeeming join token: the object store is unavailable", "token", p.ID, "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(storeRetryAfter))
		apiError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "the device's object store does not answer; retry later")
		return
	case err != nil:
		// The device's fault, not the client's: no allowance spent.
		j.log.Error("redeeming join token", "token", p.ID, "err", err)
		apiError(w, http.StatusInternalServerError, "INTERNAL", "redeeming the join token failed on the device")
		return
	}
	d := j.state.Device
	j.log.Info("client joined", "client", res.ClientID, "name", name, "role", res.Role, "token", p.ID, "remote", addr)
	resp := JoinResponse{
		RegistryHost: d.Host, Port: d.Port, IPs: d.IPs, CAPEM: string(j.state.CA.PEM),
		ClientID: res.ClientID, Username: res.ClientID, Password: res.Secret, Role: res.Role,
	}
	if j.replicas != nil {
		resp.Replicas = j.replicas()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (j *joinAPI) fail(w http.ResponseWriter, addr, reason string, status int, code string, err error) {
	j.metrics.authFailures.WithLabelValues(reason).Inc()
	j.log.Warn("join refused", "remote", addr, "reason", err.Error())
	apiError(w, status, code, err.Error())
}

// leave revokes the calling client's own credential (edgecr leave).
func (j *joinAPI) leave(w http.ResponseWriter, r *http.Request) {
	addr := remoteHost(r)
	t, ok := j.attempt(w, r, addr)
	if !ok {
		return
	}
	user, secret, ok := r.BasicAuth()
	if !ok {
		// The challenge round trip, not a failure.
		t.settle(false)
		w.Header().Set("WWW-Authenticate", challenge)
		apiError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	role, err := j.auth.Verify(user, secret)
	if reason := failureReason(err); err != nil && reason != "internal" {
		t.settle(true)
		j.fail(w, addr, reason, http.StatusUnauthorized, "UNAUTHORIZED", fmt.Errorf("authentication failed: %w", err))
		return
	}
	t.settle(false)
	if errors.Is(err, ErrIdentitiesUnchecked) {
		j.log.Warn("verifying credentials", "err", err)
		apiError(w, http.StatusServiceUnavailable, "UNAVAILABLE", ErrIdentitiesUnchecked.Error()+" (the object store does not answer); retry later")
		return
	}
	if err != nil {
		j.log.Error("verifying credentials", "err", err)
		apiError(w, http.StatusInternalServerError, "INTERNAL", "verifying credentials failed on the device")
		return
	}
	if role == RoleAdmin {
		apiError(w, http.StatusForbidden, "DENIED", "the admin identity cannot revoke itself")
		return
	}
	if err := j.state.Identities().Revoke(user, j.now()); err != nil {
		j.log.Error("revoking client", "client", user, "err", err)
		apiError(w, http.StatusInternalServerError, "INTERNAL", "revoking failed on the device")
		return
	}
	j.log.Info("client left", "client", user, "remote", addr)
	w.WriteHeader(http.StatusNoContent)
}
