package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // the baseline's auth
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// baseline is an in-process distribution registry on a loopback TLS
// listener: the reference edgecrd is compared with.
type baseline struct {
	base     string
	user     string
	password string // empty: no auth configured
	roots    *x509.CertPool
	srv      *http.Server
	done     chan error
}

// startBaseline serves distribution from storage under dir, with htpasswd
// auth (one user, bcrypt at the default cost, as `htpasswd -B` writes it)
// when withAuth is set, and none otherwise.
func startBaseline(ctx context.Context, dir string, withAuth bool) (b *baseline, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating baseline dir: %w", err)
	}
	storage := map[string]any{
		"filesystem":  map[string]any{"rootdirectory": filepath.Join(dir, "registry")},
		"delete":      map[string]any{"enabled": true},
		"cache":       map[string]any{"blobdescriptor": "inmemory"},
		"redirect":    map[string]any{"disable": true},
		"maintenance": map[string]any{"uploadpurging": map[string]any{"enabled": false}},
	}
	doc := map[string]any{
		"version": "0.1",
		"log":     map[string]any{"level": "error", "accesslog": map[string]any{"disabled": true}},
		"storage": storage,
		"http":    map[string]any{"secret": rand.Text()},
	}
	b = &baseline{done: make(chan error, 1)}
	if withAuth {
		b.user, b.password = "bench", rand.Text()
		hash, err := bcrypt.GenerateFromPassword([]byte(b.password), bcrypt.DefaultCost)
		if err != nil {
			return nil, fmt.Errorf("hashing the baseline password: %w", err)
		}
		path := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(path, []byte(b.user+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("writing htpasswd: %w", err)
		}
		doc["auth"] = map[string]any{"htpasswd": map[string]any{"realm": "bench", "path": path}}
	}
	// Parsed like edgecrd's own configuration (server/registry.go), so that
	// distribution fills in the same defaults.
	y, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding the baseline configuration: %w", err)
	}
	c, err := configuration.Parse(bytes.NewReader(y))
	if err != nil {
		return nil, fmt.Errorf("parsing the baseline configuration: %w", err)
	}

	app, err := newApp(ctx, c)
	if err != nil {
		return nil, err
	}
	cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	b.roots = x509.NewCertPool()
	b.roots.AddCert(cert.Leaf)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the baseline registry: %w", err)
	}
	b.base = "https://" + ln.Addr().String()
	b.srv = &http.Server{
		Handler:           app,
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
	}
	go func() { b.done <- b.srv.ServeTLS(ln, "", "") }()
	return b, nil
}

// newApp turns distribution's configuration panics into errors.
func newApp(ctx context.Context, c *configuration.Configuration) (app *handlers.App, err error) {
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" {
		// Otherwise distribution's tracing retries a collector on localhost every 5 s.
		os.Setenv("OTEL_TRACES_EXPORTER", "none")
	}
	logrus.SetLevel(logrus.ErrorLevel)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("configuring the baseline registry: %v", r)
		}
	}()
	return handlers.NewApp(ctx, c), nil
}

func (b *baseline) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("stopping the baseline registry: %w", err)
	}
	if err := <-b.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the baseline registry: %w", err)
	}
	return nil
}

// selfSigned is a throwaway ECDSA P-256 certificate for 127.0.0.1, the
// same key type as edgecrd's serving certificate.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating the baseline key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "edgecr bench baseline"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing the baseline certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing the baseline certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
