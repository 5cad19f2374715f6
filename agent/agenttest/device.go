// Package agenttest provides a fake edgecr device (join API and registry
// /v2/ over TLS from a fresh CA, per the device contract) and a Debian-like
// system root with an emulated update-ca-certificates, for the agent's and
// cmd/edgecr's tests.
package agenttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DeviceOptions configure NewDevice.
type DeviceOptions struct {
	RegistryHost string   // default ecr.box.internal
	Role         string   // role of joined clients; default push
	IPs          []string // advertised; default 127.0.0.1
	// Throttle makes every join answer 429 TOO_MANY_REQUESTS.
	Throttle bool
	// ThrottleFirst makes the first that many joins answer 429 with
	// Retry-After: 1 (a device throttling the address for a moment).
	ThrottleFirst int
	// AnswerCAPEM replaces the CA in join answers (a device that is not
	// what it pins).
	AnswerCAPEM []byte
	// Replicas makes a device with replicas (issue 12): it listens on each
	// of these loopback addresses, on one port, answers them in joins
	// ("replicas") and at GET /edgecr/v1/replicas, and its URL is the
	// first one's. StopReplica makes one unreachable.
	Replicas []string

	// The hostile device's knobs. By default the CA is constrained as
	// edgecrd's is (DNS: RegistryHost without its first label, and
	// localhost; IPs: the private ranges), and the certificate names
	// RegistryHost and localhost.
	//
	// UnconstrainedCA makes a CA without name constraints.
	UnconstrainedCA bool
	// PermittedDNS replaces the CA's permitted DNS zones.
	PermittedDNS []string
	// PermittedIPs replaces the CA's permitted IP ranges (CIDRs).
	PermittedIPs []string
	// CertNames replaces the DNS names of the device's certificate.
	CertNames []string
	// AnswerHost, AnswerClientID and AnswerRole replace registryHost,
	// clientID (and username) and role in join answers.
	AnswerHost, AnswerClientID, AnswerRole string
}

// privateCIDRs are the ranges edgecrd's CA permits (server/pki.go).
var privateCIDRs = []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
	"169.254.0.0/16", "198.18.0.0/15", "::1/128", "fc00::/7", "fe80::/10"}

// constraints applies o's CA constraints to a CA template.
func (o DeviceOptions) constraints(t testing.TB, tmpl *x509.Certificate) {
	t.Helper()
	if o.UnconstrainedCA {
		return
	}
	dns := o.PermittedDNS
	if dns == nil {
		_, zone, _ := strings.Cut(o.RegistryHost, ".")
		dns = []string{zone, "localhost"}
	}
	cidrs := o.PermittedIPs
	if cidrs == nil {
		cidrs = privateCIDRs
	}
	tmpl.PermittedDNSDomains = dns
	tmpl.PermittedDNSDomainsCritical = true
	for _, c := range cidrs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.PermittedIPRanges = append(tmpl.PermittedIPRanges, n)
	}
}

// Device is a fake edgecr device on an httptest TLS server that serves the
// chain [leaf, CA] of a CA made for it.
type Device struct {
	URL          string // https://127.0.0.1:PORT
	Port         int
	RegistryHost string
	CAPEM        []byte
	Pin          string // hex SHA-256 of the CA's DER
	IPs          []string

	srv  *httptest.Server
	opts DeviceOptions

	// The CA's key and certificate, and the chain served (ReissueCA
	// replaces it).
	caKey   *ecdsa.PrivateKey
	caCert  *x509.Certificate
	chainMu sync.Mutex
	chain   *tls.Certificate

	replicaLns map[string]net.Listener

	mu       sync.Mutex
	replicas []string
	tokens   map[string]*fakeToken
	clients  map[string]*Client
	joinHits int
	deletes  int
	requests []string
}

// Client is a credential the fake device issued.
type Client struct {
	ID, Name, Role, Password string
	Revoked                  bool
}

type fakeToken struct {
	secret  string
	uses    int
	expires time.Time
}

// NewDevice starts a fake device; it stops when the test ends.
func NewDevice(t testing.TB, o DeviceOptions) *Device {
	t.Helper()
	if o.RegistryHost == "" {
		o.RegistryHost = "ecr.box.internal"
	}
	if o.Role == "" {
		o.Role = "push"
	}
	if len(o.IPs) == 0 {
		o.IPs = []string{"127.0.0.1"}
	}
	caKey, caCert, caDER := newCA(t, "edgecr device CA "+o.RegistryHost, o.constraintsOf(t))
	certNames := o.CertNames
	if certNames == nil {
		certNames = []string{o.RegistryHost, "localhost"}
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: o.RegistryHost},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     certNames,
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	for _, ip := range o.Replicas {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	d := &Device{
		RegistryHost: o.RegistryHost,
		CAPEM:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		Pin:          hexSum(caDER),
		IPs:          o.IPs,
		opts:         o,
		tokens:       map[string]*fakeToken{},
		replicas:     o.Replicas,
		clients:      map[string]*Client{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /edgecr/v1/ca", d.serveCA)
	mux.HandleFunc("POST /edgecr/v1/join", d.serveJoin)
	mux.HandleFunc("DELETE /edgecr/v1/clients/self", d.serveRevoke)
	mux.HandleFunc("GET /v2/", d.serveV2)
	if len(o.Replicas) > 0 {
		mux.HandleFunc("GET /edgecr/v1/replicas", d.serveReplicas)
	}
	d.srv = httptest.NewUnstartedServer(d.record(mux))
	d.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes the client refuses
	d.caKey, d.caCert = caKey, caCert
	d.chain = &tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}
	d.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{*d.chain},
		// Called on every handshake (GetCertificate is not, for a client
		// that sends no server name): serves the chain ReissueCA set.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			d.chainMu.Lock()
			defer d.chainMu.Unlock()
			return &tls.Config{Certificates: []tls.Certificate{*d.chain}}, nil
		},
	}
	if len(o.Replicas) > 0 {
		d.srv.Listener.Close()
		d.replicaLns = listenAll(t, o.Replicas)
		d.srv.Listener = d.replicaLns[o.Replicas[0]]
	}
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	for _, ip := range o.Replicas[min(1, len(o.Replicas)):] {
		go d.srv.Config.Serve(tls.NewListener(d.replicaLns[ip], d.srv.TLS))
		t.Cleanup(func() { d.replicaLns[ip].Close() })
	}
	d.URL = d.srv.URL
	d.Port = d.srv.Listener.Addr().(*net.TCPAddr).Port
	return d
}

// listenAll binds one port on every address of ips.
func listenAll(t testing.TB, ips []string) map[string]net.Listener {
	t.Helper()
	for range 20 { // the port may be taken on another address
		lns := map[string]net.Listener{}
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatalf("listening on %s: %v", ips[0], err)
		}
		lns[ips[0]] = first
		port := strconv.Itoa(first.Addr().(*net.TCPAddr).Port)
		for _, ip := range ips[1:] {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				break
			}
			lns[ip] = ln
		}
		if len(lns) == len(ips) {
			return lns
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	t.Fatalf("no port free on every one of %v", ips)
	return nil
}

// StopReplica closes the listener of the replica at ip: connections to it
// are refused from then on.
func (d *Device) StopReplica(ip string) {
	if ln := d.replicaLns[ip]; ln != nil {
		ln.Close()
	}
}

// SetReplicas changes the replica addresses the device answers (a replica
// joined or left the set).
func (d *Device) SetReplicas(ips []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.replicas = ips
}

func (d *Device) serveReplicas(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"replicas": d.replicas})
}

// Registry is host:port of the fake registry.
func (d *Device) Registry() string { return net.JoinHostPort(d.RegistryHost, strconv.Itoa(d.Port)) }

// Close stops the device: it becomes unreachable.
func (d *Device) Close() { d.srv.Close() }

// TokenOptions configure Token.
type TokenOptions struct {
	Uses    int  // default 1
	Expired bool // already expired
	// Pin replaces the device CA's pin in the token (the MITM case).
	Pin string
}

// Token creates a join token.
func (d *Device) Token(o TokenOptions) string {
	if o.Uses == 0 {
		o.Uses = 1
	}
	id := randHex(8)
	secret := randB64(32)
	exp := time.Now().Add(time.Hour)
	if o.Expired {
		exp = time.Now().Add(-time.Minute)
	}
	d.mu.Lock()
	d.tokens[id] = &fakeToken{secret: secret, uses: o.Uses, expires: exp}
	d.mu.Unlock()
	pin := d.Pin
	if o.Pin != "" {
		pin = o.Pin
	}
	return "edgecr1." + pin + "." + id + "." + secret
}

// JoinHits counts requests that reached the join endpoint.
func (d *Device) JoinHits() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.joinHits
}

// Deletes counts DELETE /edgecr/v1/clients/self requests.
func (d *Device) Deletes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deletes
}

// Requests lists "METHOD PATH" of every request served.
func (d *Device) Requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.requests...)
}

// Clients returns a copy of the issued clients by user name.
func (d *Device) Clients() map[string]Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]Client{}
	for k, c := range d.clients {
		out[k] = *c
	}
	return out
}

// Revoke revokes a client, as an admin would on the device.
func (d *Device) Revoke(username string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.clients[username]; c != nil {
		c.Revoked = true
	}
}

func (d *Device) record(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.requests = append(d.requests, r.Method+" "+r.URL.Path)
		d.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (d *Device) serveCA(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(d.CAPEM)
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (d *Device) serveJoin(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.joinHits++
	if d.joinHits <= d.opts.ThrottleFirst {
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "too many failed attempts")
		return
	}
	if d.opts.Throttle {
		w.Header().Set("Retry-After", "6")
		apiError(w, http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "too many join attempts")
		return
	}
	var req struct {
		Token string `json:"token"`
		Name  string `json:"name"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", "body is not JSON")
		return
	}
	parts := strings.Split(req.Token, ".")
	if len(parts) != 4 || parts[0] != "edgecr1" || parts[1] != d.Pin {
		apiError(w, http.StatusUnauthorized, "TOKEN_INVALID", "unknown token")
		return
	}
	tok := d.tokens[parts[2]]
	if tok == nil || subtle.ConstantTimeCompare([]byte(tok.secret), []byte(parts[3])) != 1 {
		apiError(w, http.StatusUnauthorized, "TOKEN_INVALID", "unknown token")
		return
	}
	if time.Now().After(tok.expires) {
		apiError(w, http.StatusUnauthorized, "TOKEN_EXPIRED", "the token expired")
		return
	}
	if tok.uses <= 0 {
		apiError(w, http.StatusUnauthorized, "TOKEN_USED_UP", "the token has no uses left")
		return
	}
	tok.uses--
	id := "c-" + randHex(8)
	if d.opts.AnswerClientID != "" {
		id = d.opts.AnswerClientID
	}
	c := &Client{ID: id, Name: req.Name, Role: d.opts.Role, Password: randB64(32)}
	d.clients[id] = c
	caPEM := d.CAPEM
	if d.opts.AnswerCAPEM != nil {
		caPEM = d.opts.AnswerCAPEM
	}
	host, role := d.RegistryHost, c.Role
	if d.opts.AnswerHost != "" {
		host = d.opts.AnswerHost
	}
	if d.opts.AnswerRole != "" {
		role = d.opts.AnswerRole
	}
	answer := map[string]any{
		"registryHost": host,
		"port":         d.Port,
		"ips":          d.IPs,
		"caPEM":        string(caPEM),
		"clientID":     id,
		"username":     id,
		"password":     c.Password,
		"role":         role,
	}
	if len(d.replicas) > 0 {
		answer["replicas"] = d.replicas
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

// authed returns the client the request's Basic auth names, if valid.
func (d *Device) authed(r *http.Request) *Client {
	u, p, ok := r.BasicAuth()
	if !ok {
		return nil
	}
	c := d.clients[u]
	if c == nil || c.Revoked || subtle.ConstantTimeCompare([]byte(c.Password), []byte(p)) != 1 {
		return nil
	}
	return c
}

func (d *Device) serveRevoke(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deletes++
	c := d.authed(r)
	if c == nil {
		apiError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	c.Revoked = true
	w.WriteHeader(http.StatusNoContent)
}

func (d *Device) serveV2(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.authed(r) == nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="edgecr"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{}")
}

// NewCAPEM returns a fresh CA certificate (PEM) and its pin: another
// device's CA, for the wrong-CA cases.
func NewCAPEM(t testing.TB) (pemBytes []byte, pin string) {
	t.Helper()
	_, _, der := newCA(t, "another CA", DeviceOptions{RegistryHost: "ecr.other.internal"}.constraintsOf(t))
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), hexSum(der)
}

func (o DeviceOptions) constraintsOf(t testing.TB) func(*x509.Certificate) {
	return func(c *x509.Certificate) { o.constraints(t, c) }
}

func newCA(t testing.TB, cn string, constrain func(*x509.Certificate)) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	constrain(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randB64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Secret returns the secret part of a token, for tests that grep outputs.
func Secret(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 4 {
		panic(fmt.Sprintf("not a token: %d parts", len(parts)))
	}
	return parts[3]
}
