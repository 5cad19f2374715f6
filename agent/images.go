package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Errors of the image commands, checked with errors.Is.
var (
	// ErrSeveralJoined means a short reference (repo:tag) cannot name the
	// device: this client joined more than one.
	ErrSeveralJoined = errors.New("several registries are joined")
	// ErrDenied means the registry refused the operation to this
	// credential (403 DENIED): deleting and listing repositories need the
	// device's admin role, pushing the push role.
	ErrDenied = errors.New("denied")
	// ErrNotFound means the repository, tag or manifest does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized means the registry refuses the credential (401): on
	// an edgecr device, a revoked client.
	ErrUnauthorized = errors.New("the registry refuses the credential (401)")
)

// notFound is an error message that errors.Is ErrNotFound, for messages
// that say "not found" in their own words.
type notFound string

func (e notFound) Error() string        { return string(e) }
func (e notFound) Is(target error) bool { return target == ErrNotFound }

// ImagesOptions configure the image commands (ls, rm, cp).
type ImagesOptions struct {
	// Username and Password, when set, replace the stored credential for
	// the registry a command addresses (for rm and ls, the registry of the
	// reference; for cp, the destination's): the device admin's, from
	// `edgecrd info`, for what the client's own role may not do.
	Username string
	Password Secret
	// Keychain answers for registries this client did not join (default:
	// authn.DefaultKeychain, the Docker config).
	Keychain authn.Keychain
	// Transport reaches registries this client did not join (default:
	// remote.DefaultTransport).
	Transport http.RoundTripper
	// Jobs is how many blobs cp moves at once (default 4).
	Jobs int
}

// Images runs the image commands against the registries this client
// joined and any other registry. A joined device is reached as join set it
// up, whatever the live system's state: by its name resolved through the
// system (under --root: the root's hosts file; the IP join recorded if that
// fails), TLS verified against the CA pinned at join, and the credential
// join stored for docker-credential-edgecr. Other registries go through
// the Docker config's credentials and the system roots.
type Images struct {
	sys      *System
	devices  []*imageDevice
	keychain authn.Keychain
	other    http.RoundTripper
	override authn.Authenticator // nil: the stored credentials
	jobs     int
}

// imageDevice is a joined registry as the image commands reach it.
type imageDevice struct {
	registry string // host:port, lower case
	entry    *Entry // nil when only the credential store names it
	rt       http.RoundTripper
}

// Images returns the image commands' view of the joined registries. It
// reads the state; when the state is not readable by this user (join ran
// under sudo, the state is root's), the registries are those the user's
// credential store holds, reached with the system's resolver and roots.
func (s *System) Images(o ImagesOptions) (*Images, error) {
	im := &Images{sys: s, keychain: o.Keychain, other: o.Transport, jobs: o.Jobs}
	if im.keychain == nil {
		im.keychain = authn.DefaultKeychain
	}
	if im.other == nil {
		im.other = remote.DefaultTransport
	}
	if im.jobs <= 0 {
		im.jobs = 4
	}
	if o.Username != "" || o.Password != "" {
		im.override = &authn.Basic{Username: o.Username, Password: o.Password.reveal()}
	}
	st, err := s.State.Load()
	switch {
	case err == nil:
		for _, e := range st.Registries {
			if !e.Done(StepBootstrap) || e.CAPEM == "" {
				continue
			}
			rt, err := s.deviceTransport(e)
			if err != nil {
				return nil, err
			}
			im.devices = append(im.devices, &imageDevice{registry: strings.ToLower(e.Registry), entry: e, rt: rt})
		}
	case errors.Is(err, fs.ErrPermission) && s.CredentialsPath != "":
		s.Log.Debug("state not readable; joined registries from the credential store", "state", s.State.Path(), "store", s.CredentialsPath)
		if im.devices, err = s.credentialDevices(im.other); err != nil {
			return nil, fmt.Errorf("reading state %s: %w; and the credential store: %w", s.State.Path(), fs.ErrPermission, err)
		}
	default:
		return nil, err
	}
	return im, nil
}

// credentialDevices are the registries the user's credential store holds
// (edgecr join stored them for docker-credential-edgecr), reached through
// rt: what the image commands know when the state is not readable.
func (s *System) credentialDevices(rt http.RoundTripper) ([]*imageDevice, error) {
	creds, err := s.Credentials(s.CredentialsPath).List()
	if err != nil {
		return nil, err
	}
	var out []*imageDevice
	for reg := range creds {
		out = append(out, &imageDevice{registry: strings.ToLower(reg), rt: rt})
	}
	slices.SortFunc(out, func(a, b *imageDevice) int { return strings.Compare(a.registry, b.registry) })
	return out, nil
}

// Registries returns the joined registries (host:port).
func (im *Images) Registries() []string {
	out := make([]string, len(im.devices))
	for i, d := range im.devices {
		out[i] = d.registry
	}
	return out
}

func (im *Images) device(registry string) *imageDevice {
	registry = strings.ToLower(registry)
	for _, d := range im.devices {
		if d.registry == registry {
			return d
		}
	}
	return nil
}

// only returns the joined registry a short reference s means: the one
// this client joined.
func (im *Images) only(s string) (*imageDevice, error) {
	switch len(im.devices) {
	case 0:
		return nil, fmt.Errorf("%q names no registry and this client is %w to any device: write the full reference (host:port/%s) or run `edgecr join` first", s, ErrNotJoined, s)
	case 1:
		return im.devices[0], nil
	}
	return nil, fmt.Errorf("%q names no registry and %w (%s): write the full reference, e.g. %s/%s",
		s, ErrSeveralJoined, strings.Join(im.Registries(), ", "), im.devices[0].registry, s)
}

// hasRegistry reports whether reference s starts with a registry, by
// Docker's rule: a first path component holding "." or ":", or
// "localhost".
func hasRegistry(s string) bool {
	first, _, ok := strings.Cut(s, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// expand prefixes a short reference with the joined device.
func (im *Images) expand(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty reference")
	}
	if hasRegistry(s) {
		return s, nil
	}
	d, err := im.only(s)
	if err != nil {
		return "", err
	}
	return d.registry + "/" + s, nil
}

// Reference parses an image reference: full (host:port/repo:tag,
// host:port/repo@sha256:…) or short (repo:tag, repo@digest), which means
// the device this client joined. No tag means "latest". A Docker Hub image
// is written in full: docker.io/library/alpine:3.20.
func (im *Images) Reference(s string) (name.Reference, error) {
	full, err := im.expand(s)
	if err != nil {
		return nil, err
	}
	ref, err := name.ParseReference(full)
	if err != nil {
		return nil, fmt.Errorf("parsing reference %q: %w", s, err)
	}
	return ref, nil
}

// TagOrDigest parses a reference as Reference does, and requires a tag or
// a digest: what rm deletes is never an implied ":latest".
func (im *Images) TagOrDigest(s string) (name.Reference, error) {
	path := strings.TrimSpace(s)
	if hasRegistry(path) {
		_, path, _ = strings.Cut(path, "/")
	}
	if !strings.ContainsAny(path, ":@") {
		return nil, fmt.Errorf("reference %q has neither tag nor digest: write REPO:TAG or REPO@sha256:…", s)
	}
	return im.Reference(s)
}

// Repository parses a repository, full or short (see Reference); a tag or
// digest is an error.
func (im *Images) Repository(s string) (name.Repository, error) {
	full, err := im.expand(s)
	if err != nil {
		return name.Repository{}, err
	}
	path := full
	if i := strings.IndexByte(full, '/'); i >= 0 {
		path = full[i+1:]
	}
	if strings.ContainsAny(path, ":@") {
		return name.Repository{}, fmt.Errorf("parsing repository %q: a repository has no tag or digest (drop what follows %q)", s, path[:strings.IndexAny(path, ":@")])
	}
	repo, err := name.NewRepository(full)
	if err != nil {
		return name.Repository{}, fmt.Errorf("parsing repository %q: %w", s, err)
	}
	return repo, nil
}

// RegistryArg reports whether s names a registry rather than a
// repository: a joined registry (host:port), or anything ending in "/"
// (ghcr.io/). "" is the joined device.
func (im *Images) RegistryArg(s string) (name.Registry, bool, error) {
	var reg string
	switch {
	case s == "":
		d, err := im.only("")
		if err != nil {
			if len(im.devices) == 0 {
				return name.Registry{}, true, fmt.Errorf("this client is %w to any device: name a registry (host:port/) or run `edgecr join` first", ErrNotJoined)
			}
			return name.Registry{}, true, fmt.Errorf("%w (%s): name one, e.g. `edgecr ls %s`", ErrSeveralJoined, strings.Join(im.Registries(), ", "), im.devices[0].registry)
		}
		reg = d.registry
	case strings.HasSuffix(s, "/") && !strings.Contains(strings.TrimSuffix(s, "/"), "/"):
		reg = strings.TrimSuffix(s, "/")
	case im.device(s) != nil:
		reg = s
	default:
		return name.Registry{}, false, nil
	}
	r, err := name.NewRegistry(reg)
	if err != nil {
		return name.Registry{}, true, fmt.Errorf("parsing registry %q: %w", s, err)
	}
	return r, true, nil
}

// options are the go-containerregistry options for one command: one
// transport and one keychain that route each registry (the devices, the
// rest); the override credential applies to overrideFor.
func (im *Images) options(ctx context.Context, overrideFor string, observe func(*http.Request, *http.Response)) []remote.Option {
	rt := &routeTransport{im: im, observe: observe}
	kc := &imagesKeychain{im: im, overrideFor: strings.ToLower(overrideFor)}
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt), remote.WithAuthFromKeychain(kc), remote.WithJobs(im.jobs)}
}

// routeTransport sends a joined device's requests through its transport
// and the rest through the default one.
type routeTransport struct {
	im      *Images
	observe func(*http.Request, *http.Response) // may be nil
}

func (t *routeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.im.other
	if d := t.im.device(req.URL.Host); d != nil {
		rt = d.rt
	}
	resp, err := rt.RoundTrip(req)
	if err == nil && t.observe != nil {
		t.observe(req, resp)
	}
	return resp, err
}

// imagesKeychain answers with the override for its registry, the stored
// credential for a joined device, and the fallback keychain otherwise.
type imagesKeychain struct {
	im          *Images
	overrideFor string
}

func (k *imagesKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	reg := strings.ToLower(r.RegistryStr())
	if k.im.override != nil && reg == k.overrideFor {
		return k.im.override, nil
	}
	if d := k.im.device(reg); d != nil {
		if user, secret, ok := k.im.storedCredential(d); ok {
			return &authn.Basic{Username: user, Password: secret.reveal()}, nil
		}
		k.im.sys.Log.Debug("no stored credential for a joined registry; trying the Docker config", "registry", reg)
	}
	return k.im.keychain.Resolve(r)
}

func (im *Images) storedCredential(d *imageDevice) (string, Secret, bool) {
	if d.entry != nil {
		return im.sys.storedCredential(d.entry)
	}
	u, p, err := im.sys.Credentials(im.sys.CredentialsPath).Get(d.registry)
	if err != nil || u == "" || p == "" {
		return "", "", false
	}
	return u, Secret(p), true
}

// deviceTransport reaches the device of entry e: go-containerregistry's
// default transport (timeouts, pool sizes, HTTP/2), no proxy, TLS verified
// against the CA pinned at join only, and the name resolved through the
// system's resolver (under --root: the root's hosts file), then the IP
// join recorded.
func (s *System) deviceTransport(e *Entry) (http.RoundTripper, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(e.CAPEM)) {
		return nil, fmt.Errorf("the state's CA for %s holds no certificate: run `edgecr join` again", e.Registry)
	}
	var tr *http.Transport
	if dt, ok := remote.DefaultTransport.(*http.Transport); ok {
		tr = dt.Clone()
	} else {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	tr.Proxy = nil // the device is on the local network, as join reached it
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var ips []string
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = append(ips, ip.String())
		} else if addrs, err := s.Resolver.LookupNetIP(ctx, "ip", host); err == nil {
			for _, a := range addrs {
				ips = append(ips, a.Unmap().String())
			}
		} else {
			s.Log.Debug("resolving the registry host failed; using the IP join recorded", "host", host, "err", err)
		}
		for _, a := range e.Addresses() {
			if a != "" && !slices.Contains(ips, a) {
				ips = append(ips, a)
			}
		}
		var errs []error
		for _, ip := range ips {
			c, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip, port))
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			return nil, fmt.Errorf("no address for %s", host)
		}
		return nil, errors.Join(errs...)
	}
	return tr, nil
}

// who is this client on the registry: "client c-… (role push)", for the
// messages of refused operations.
func (im *Images) who(registry string) string {
	if im.override != nil {
		if b, ok := im.override.(*authn.Basic); ok {
			return "user " + b.Username
		}
	}
	if d := im.device(registry); d != nil && d.entry != nil {
		return fmt.Sprintf("client %s (role %s)", d.entry.ClientID, d.entry.Role)
	}
	return "this credential"
}

// registryError classifies an error of go-containerregistry: a 404 wraps
// ErrNotFound, a 403 ErrDenied, a 401 ErrUnauthorized, each with the
// registry's messages; the rest is wrapped as is.
func registryError(err error, what string) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return fmt.Errorf("%s: %w", what, unwrapURLError(err))
	}
	msg := diagnostics(te)
	switch te.StatusCode {
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w%s", what, ErrNotFound, msg)
	case http.StatusForbidden:
		return fmt.Errorf("%s: %w%s", what, ErrDenied, msg)
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: %w%s", what, ErrUnauthorized, msg)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// diagnostics is the registry's error messages as ": CODE: message; …",
// or "" when there are none.
func diagnostics(te *transport.Error) string {
	var parts []string
	for _, d := range te.Errors {
		if d.Message != "" {
			parts = append(parts, string(d.Code)+": "+d.Message)
		} else {
			parts = append(parts, string(d.Code))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// statusCode is the HTTP status of a registry error, or 0.
func statusCode(err error) int {
	if te := asTransportError(err); te != nil {
		return te.StatusCode
	}
	return 0
}

func asTransportError(err error) *transport.Error {
	var te *transport.Error
	if errors.As(err, &te) {
		return te
	}
	return nil
}
