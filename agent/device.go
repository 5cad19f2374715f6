package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/edgecr/edgecr/internal/textsafe"
)

// DefaultPort is the device's registry and join port, used when the join URL
// names none.
const DefaultPort = 31001

// The device API paths (outside /v2/, on the registry listener).
const (
	pathCA         = "/edgecr/v1/ca"
	pathReplicas   = "/edgecr/v1/replicas"
	pathJoin       = "/edgecr/v1/join"
	pathClientSelf = "/edgecr/v1/clients/self"
	pathV2         = "/v2/"
)

// Errors of the device API, matched with errors.Is on an *APIError (and, for
// ErrCredentialRejected and ErrThrottled, on the registry's answers too).
var (
	ErrTokenExpired       = errors.New("join token expired")
	ErrTokenUsedUp        = errors.New("join token used up")
	ErrTokenRejected      = errors.New("join token not accepted by the device")
	ErrThrottled          = errors.New("device is throttling requests")
	ErrCredentialRejected = errors.New("device does not accept the client credential")
)

// ParseDeviceURL parses the join URL: https://HOST[:PORT] with nothing
// after the host but an optional "/". A URL without a scheme gets https://,
// one without a port gets DefaultPort. Plain http is refused.
func ParseDeviceURL(raw string) (*url.URL, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return nil, errors.New("parsing device URL: empty")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("parsing device URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("parsing device URL %q: scheme %q, want https", raw, u.Scheme)
	case u.User != nil:
		return nil, fmt.Errorf("parsing device URL: it must not hold a user name or password")
	case u.Hostname() == "":
		return nil, fmt.Errorf("parsing device URL %q: no host", raw)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return nil, fmt.Errorf("parsing device URL %q: want https://HOST[:PORT] with no path", raw)
	}
	port := u.Port()
	if port == "" {
		port = strconv.Itoa(DefaultPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("parsing device URL %q: invalid port %q", raw, port)
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(u.Hostname(), port)}, nil
}

// JoinResponse is the device's answer to a join request.
type JoinResponse struct {
	RegistryHost string   `json:"registryHost"`
	Port         int      `json:"port"`
	IPs          []string `json:"ips"`
	// Replicas are the addresses of every live replica of a device on a
	// bucket (issue 12); absent for a single node.
	Replicas []string `json:"replicas,omitempty"`
	CAPEM    string   `json:"caPEM"`
	ClientID string   `json:"clientID"`
	Username string   `json:"username"`
	Password Secret   `json:"password"`
	Role     string   `json:"role"`
}

// APIError is an error answer of the device API:
// {"error":{"code":"…","message":"…"}}.
type APIError struct {
	Op         string // what the agent asked: "join", "revoke", ...
	Status     int
	Code       string // TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_USED_UP, BAD_REQUEST, TOO_MANY_REQUESTS, ...
	Message    string // the device's text, with any secret of ours taken out
	TokenID    string // for join errors
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	var what string
	switch e.Code {
	case "TOKEN_EXPIRED":
		what = fmt.Sprintf("join token %s has expired", e.TokenID)
	case "TOKEN_USED_UP":
		what = fmt.Sprintf("join token %s has been used up", e.TokenID)
	case "TOKEN_INVALID":
		what = fmt.Sprintf("the device does not accept join token %s", e.TokenID)
	case "TOO_MANY_REQUESTS":
		what = "the device is throttling requests from this address"
		if e.RetryAfter > 0 {
			what += fmt.Sprintf(": retry after %s", e.RetryAfter)
		}
	default:
		what = fmt.Sprintf("%s: device answered %d", e.Op, e.Status)
		if e.Code != "" {
			what += " " + e.Code
		}
	}
	if e.Message != "" && !restates(what, e.Message) {
		what += " (" + e.Message + ")"
	}
	return what
}

// restates reports whether msg adds nothing to what: every word of it is
// there already ("join token has been used up" after "join token 1a2b has
// been used up").
func restates(what, msg string) bool {
	have := map[string]bool{}
	for _, w := range strings.Fields(strings.ToLower(what)) {
		have[strings.Trim(w, ".,:;()")] = true
	}
	for _, w := range strings.Fields(strings.ToLower(msg)) {
		if !have[strings.Trim(w, ".,:;()")] {
			return false
		}
	}
	return true
}

// Is maps codes to the package's sentinel errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrTokenExpired:
		return e.Code == "TOKEN_EXPIRED"
	case ErrTokenUsedUp:
		return e.Code == "TOKEN_USED_UP"
	case ErrTokenRejected:
		return e.Code == "TOKEN_INVALID"
	case ErrThrottled:
		return e.Code == "TOO_MANY_REQUESTS" || e.Status == http.StatusTooManyRequests
	case ErrCredentialRejected:
		return e.Op != "join" && e.Status == http.StatusUnauthorized
	}
	return false
}

// DeviceClient talks to a device's join API and registry over a connection
// pinned to the device CA (see verifyPinned): nothing is sent to a server
// that has not proved it holds a certificate of that CA.
type DeviceClient struct {
	base *url.URL
	pin  *pinnedTLS
	tr   *http.Transport
	http *http.Client
	// redact lists strings that must never appear in an error (the token
	// secret), taken out of anything the device says.
	redact []string
}

// NewDeviceClient returns a client of the device at base (see
// ParseDeviceURL), trusting only the CA whose Fingerprint is pin.
func NewDeviceClient(base *url.URL, pin string) *DeviceClient {
	p := &pinnedTLS{pin: pin}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:     p.config(),
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        2,
		IdleConnTimeout:     30 * time.Second,
	}
	return &DeviceClient{
		base: base,
		pin:  p,
		tr:   tr,
		http: &http.Client{
			Transport: tr,
			Timeout:   30 * time.Second,
			// A redirect could carry the token elsewhere: never follow one.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Close releases idle connections.
func (c *DeviceClient) Close() { c.tr.CloseIdleConnections() }

// URL returns the device's base URL.
func (c *DeviceClient) URL() string { return c.base.String() }

// ServerNames returns the DNS names of the certificate the device presented
// in the last handshake, without "localhost": the registry host name, for
// planning a join before the device has said it.
func (c *DeviceClient) ServerNames() []string {
	leaf := c.pin.peer()
	if leaf == nil {
		return nil
	}
	var names []string
	for _, n := range leaf.DNSNames {
		if !strings.EqualFold(n, "localhost") {
			names = append(names, strings.ToLower(n))
		}
	}
	return names
}

// Peer returns the certificate the device presented in the last handshake.
func (c *DeviceClient) Peer() *x509.Certificate { return c.pin.peer() }

// FetchCA downloads the device CA (GET /edgecr/v1/ca) and checks it is the
// pinned one. It sends nothing secret.
func (c *DeviceClient) FetchCA(ctx context.Context) ([]byte, error) {
	resp, body, err := c.do(ctx, http.MethodGet, pathCA, nil, nil)
	var pm *PinMismatchError
	if errors.As(err, &pm) {
		return nil, pm // the whole story: "CA pin mismatch: got …, want …"
	}
	if err != nil {
		return nil, fmt.Errorf("fetching the device CA: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the device CA: %w", c.apiError("fetch CA", resp, body, ""))
	}
	pem, err := checkPinnedPEM(body, c.pin.pin)
	if err != nil {
		return nil, fmt.Errorf("checking the device CA: %w", err)
	}
	return pem, nil
}

// Join spends one use of tok (POST /edgecr/v1/join) and returns the device's
// answer, whose CA is checked against the pin and returned in canonical PEM.
func (c *DeviceClient) Join(ctx context.Context, tok Token, name string) (*JoinResponse, error) {
	c.redact = append(c.redact, tok.reveal(), tok.secret)
	body, err := json.Marshal(map[string]string{"token": tok.reveal(), "name": name})
	if err != nil {
		return nil, err
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	resp, data, err := c.do(ctx, http.MethodPost, pathJoin, hdr, body)
	if err != nil {
		return nil, fmt.Errorf("joining %s: %w", c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("joining %s: %w", c.base, c.apiError("join", resp, data, tok.ID))
	}
	var jr JoinResponse
	if err := json.Unmarshal(data, &jr); err != nil {
		return nil, fmt.Errorf("joining %s: decoding the answer: %w", c.base, err)
	}
	switch {
	case jr.RegistryHost == "":
		return nil, fmt.Errorf("joining %s: the answer has no registryHost", c.base)
	case jr.Port < 1 || jr.Port > 65535:
		return nil, fmt.Errorf("joining %s: the answer has invalid port %d", c.base, jr.Port)
	case jr.Username == "" || jr.Password == "":
		return nil, fmt.Errorf("joining %s: the answer has no credential", c.base)
	}
	jr.RegistryHost = strings.ToLower(jr.RegistryHost)
	canonical, err := checkPinnedPEM([]byte(jr.CAPEM), c.pin.pin)
	if err != nil {
		// The token is spent on a device that answers with another CA: take
		// the client it made back off it (best effort) and refuse.
		_ = c.Revoke(ctx, jr.Username, jr.Password)
		return nil, fmt.Errorf("joining %s: checking the CA in the answer: %w", c.base, err)
	}
	jr.CAPEM = string(canonical)
	return &jr, nil
}

// Replicas asks the device for its live replicas' addresses (GET
// /edgecr/v1/replicas). found is false for a device without replicas (a
// single node, or an edgecrd before issue 12: 404).
func (c *DeviceClient) Replicas(ctx context.Context) (addrs []string, found bool, err error) {
	resp, data, err := c.do(ctx, http.MethodGet, pathReplicas, nil, nil)
	if err != nil {
		return nil, false, fmt.Errorf("asking %s for its replicas: %w", c.base, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, false, nil
	default:
		return nil, false, fmt.Errorf("asking %s for its replicas: %w", c.base, c.apiError("replicas", resp, data, ""))
	}
	var doc struct {
		Replicas []string `json:"replicas"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, false, fmt.Errorf("asking %s for its replicas: decoding the answer: %w", c.base, err)
	}
	return doc.Replicas, true, nil
}

// Revoke asks the device to revoke the client whose credential this is
// (DELETE /edgecr/v1/clients/self). A credential the device no longer
// knows is ErrCredentialRejected.
func (c *DeviceClient) Revoke(ctx context.Context, username string, password Secret) error {
	c.redact = append(c.redact, password.reveal())
	hdr := http.Header{"Authorization": {basicAuth(username, password)}}
	resp, data, err := c.do(ctx, http.MethodDelete, pathClientSelf, hdr, nil)
	if err != nil {
		return fmt.Errorf("revoking %s on %s: %w", username, c.base, err)
	}
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
		return nil
	default:
		return fmt.Errorf("revoking %s on %s: %w", username, c.base, c.apiError("revoke", resp, data, ""))
	}
}

// CheckCredential asks the registry whether it accepts the credential
// (GET /v2/ with Basic auth).
func (c *DeviceClient) CheckCredential(ctx context.Context, username string, password Secret) error {
	c.redact = append(c.redact, password.reveal())
	hdr := http.Header{"Authorization": {basicAuth(username, password)}}
	resp, data, err := c.do(ctx, http.MethodGet, pathV2, hdr, nil)
	if err != nil {
		return fmt.Errorf("checking the credential of %s on %s: %w", username, c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("checking the credential of %s on %s: %w", username, c.base, c.apiError("check credential", resp, data, ""))
	}
	return nil
}

// maxBody bounds what is read of any answer.
const maxBody = 1 << 20

func (c *DeviceClient) do(ctx context.Context, method, path string, hdr http.Header, body []byte) (*http.Response, []byte, error) {
	u := *c.base
	u.Path = path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "edgecr-agent")
	resp, err := c.http.Do(req)
	if err != nil {
		// Surface the pin mismatch itself rather than url.Error's wrapping,
		// which repeats the URL.
		var pm *PinMismatchError
		if errors.As(err, &pm) {
			return nil, nil, pm
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp, data, nil
}

// apiError decodes an error answer, keeping nothing secret of ours in it.
func (c *DeviceClient) apiError(op string, resp *http.Response, body []byte, tokenID string) *APIError {
	e := &APIError{Op: op, Status: resp.StatusCode, TokenID: tokenID}
	var doc struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		// The registry's OCI errors: {"errors":[{"code":"…","message":"…"}]}.
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &doc) == nil {
		e.Code, e.Message = doc.Error.Code, doc.Error.Message
		if e.Code == "" && len(doc.Errors) > 0 {
			e.Code, e.Message = doc.Errors[0].Code, doc.Errors[0].Message
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests && e.Code == "" {
		e.Code = "TOO_MANY_REQUESTS"
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	e.Message = c.clean(e.Message)
	return e
}

// clean takes our secrets and control characters out of text from the
// device and bounds its length.
func (c *DeviceClient) clean(s string) string {
	for _, r := range c.redact {
		if r != "" {
			s = strings.ReplaceAll(s, r, redacted)
		}
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || textsafe.Unsafe(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return strings.TrimSpace(s)
}
