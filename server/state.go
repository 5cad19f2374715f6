package server

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// DefaultPort is the registry port of an edge device.
const DefaultPort = 31001

// Files of the data dir.
const (
	deviceFile     = "device.json"
	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
	adminFile      = "admin.password"
	storageDir     = "registry"
	initLock       = ".init.lock"
)

// Device is device.json: what the device calls itself and where it listens.
type Device struct {
	Name       string    `json:"name"`
	Domain     string    `json:"domain"`
	Host       string    `json:"host"` // registry host name, ecr.<name>.<domain>
	IPs        []string  `json:"ips"`
	Port       int       `json:"port"`
	HTTPSecret string    `json:"httpSecret"` // signs upload state across restarts
	Created    time.Time `json:"created"`
	QuotaBytes int64     `json:"quotaBytes,omitempty"` // storage quota; 0: none
}

// Endpoint is host:port of the registry.
func (d *Device) Endpoint() string { return net.JoinHostPort(d.Host, strconv.Itoa(d.Port)) }

func (d *Device) netIPs() []net.IP {
	out := make([]net.IP, 0, len(d.IPs))
	for _, s := range d.IPs {
		out = append(out, net.ParseIP(s))
	}
	return out
}

// InitOptions are the flags of init and serve. A nil pointer / empty slice
// means "not given": the first start uses defaults, later starts keep what
// the data dir has.
type InitOptions struct {
	Name   *string
	Domain *string
	IPs    []net.IP
	Port   *int
	Quota  *int64 // storage quota in bytes; 0 removes it
	// DefaultName and DefaultIPs are used on the first start only.
	DefaultName func() (string, error)
	DefaultIPs  func() ([]net.IP, error)
}

// DefaultDomain is the DNS domain of registry hosts: .internal is reserved
// for private use (ICANN, 2024), so it never collides with a public name and,
// unlike .local, does not trigger mDNS lookups on clients.
const DefaultDomain = "internal"

// State is an initialised data dir.
type State struct {
	Dir    string
	Device Device
	CA     *CA

	dryRun  bool     // Changes: record writes instead of making them
	changed []string // files a dry run would have written

	kv  kv.Store       // the shared state (issue 12)
	loc *kv.S3Location // the bucket; nil for a data dir on local disk
}

// KV is the device's shared state: identities, tokens, device settings, the
// CA, GC and quota state. Replicas on one bucket change it only through its
// conditional writes.
func (s *State) KV() kv.Store { return s.kv }

// S3 is the bucket the device keeps its images and state in, nil for a data
// dir on local disk (the single-node default).
func (s *State) S3() *kv.S3Location { return s.loc }

// write replaces the data dir file name atomically, or only records it in a
// dry run.
func (s *State) write(name string, data []byte, mode os.FileMode) error {
	if s.dryRun {
		s.changed = append(s.changed, name)
		return nil
	}
	return writeFileAtomic(s.Path(name), data, mode)
}

// Path returns the path of a file in the data dir.
func (s *State) Path(name string) string { return filepath.Join(s.Dir, name) }

// CAFile is the path of the CA certificate.
func (s *State) CAFile() string { return s.Path(caCertFile) }

// StorageDir is the root of the registry's filesystem storage.
func (s *State) StorageDir() string { return s.Path(storageDir) }

// Identities is the identity store of the data dir.
func (s *State) Identities() *IdentityStore { return NewIdentityStore(s.Dir) }

// AdminPassword returns the stored admin password ("" if it was removed).
func (s *State) AdminPassword() (string, error) {
	b, ok, err := readOptional(s.Path(adminFile))
	if err != nil || !ok {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func validDNSName(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("invalid DNS name %q", s)
	}
	for l := range strings.SplitSeq(s, ".") {
		if !labelRE.MatchString(l) {
			return fmt.Errorf("invalid DNS name %q: label %q must be lower-case letters, digits and inner hyphens", s, l)
		}
	}
	return nil
}

// Ensure creates whatever the data dir lacks (CA, server certificate, admin
// identity, device.json) and loads the rest. It never overwrites a file it
// cannot parse: corrupt state is an error for the operator to look at.
// Flags given explicitly update device.json; the server certificate is then
// reissued under the same CA.
//
// Half-present state (some state files missing next to others) is an error
// naming the missing files, and nothing is written.
func Ensure(dir string, o InitOptions, now time.Time) (*State, error) {
	return ensure(&State{Dir: dir}, o, now)
}

// Changes returns the data dir files Ensure(dir, o, now) would write (none
// when the flags match what the data dir has), and writes nothing: what
// `edgecrd init` checks while a serve owns the data dir.
func Changes(dir string, o InitOptions, now time.Time) ([]string, error) {
	s := &State{Dir: dir, dryRun: true}
	if _, err := ensure(s, o, now); err != nil {
		return nil, err
	}
	return s.changed, nil
}

func ensure(s *State, o InitOptions, now time.Time) (*State, error) {
	dir := s.Dir
	if s.dryRun {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("checking data dir: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir %s: %w", dir, err)
	}
	unlock, err := lockFile(filepath.Join(dir, initLock))
	if err != nil {
		return nil, err
	}
	defer unlock()

	fresh, err := checkComplete(dir)
	if err != nil {
		return nil, err
	}
	if fresh && !s.dryRun {
		// Until the last file is written, a crash leaves a dir the next
		// start may finish rather than half-present state.
		if err := writeFileAtomic(s.Path(initIncomplete), nil, 0o600); err != nil {
			return nil, err
		}
	}
	if err := s.ensureDevice(o, now); err != nil {
		return nil, err
	}
	if err := s.ensureCA(now); err != nil {
		return nil, err
	}
	if _, err := s.ensureServerCert(now, serverLifetime); err != nil {
		return nil, err
	}
	if err := s.ensureAdmin(now); err != nil {
		return nil, err
	}
	if s.dryRun {
		return s, nil
	}
	if err := os.MkdirAll(s.StorageDir(), 0o700); err != nil {
		return nil, fmt.Errorf("creating storage dir: %w", err)
	}
	if fresh {
		if err := os.Remove(s.Path(initIncomplete)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("finishing data dir %s: %w", dir, err)
		}
	}
	return s, nil
}

// Load opens an initialised data dir without changing anything.
func Load(dir string) (*State, error) {
	s := &State{Dir: dir}
	b, ok, err := readOptional(s.Path(deviceFile))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("loading data dir %s: %s missing (run edgecrd init)", dir, deviceFile)
	}
	if err := s.parseDevice(b); err != nil {
		return nil, err
	}
	if s.CA, err = s.loadCA(); err != nil {
		return nil, err
	}
	if s.CA == nil {
		return nil, fmt.Errorf("loading data dir %s: %s missing (run edgecrd init)", dir, caCertFile)
	}
	return s, nil
}

func (s *State) parseDevice(b []byte) error {
	path := s.Path(deviceFile)
	if err := json.Unmarshal(b, &s.Device); err != nil {
		return fmt.Errorf("reading %s: corrupt file: %w", path, err)
	}
	d := &s.Device
	if err := validDNSName(d.Host); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if d.Port <= 0 || d.Port > 65535 {
		return fmt.Errorf("reading %s: invalid port %d", path, d.Port)
	}
	for _, ip := range d.IPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("reading %s: invalid IP %q", path, ip)
		}
	}
	if d.QuotaBytes < 0 {
		return fmt.Errorf("reading %s: negative quotaBytes %d", path, d.QuotaBytes)
	}
	if len(d.HTTPSecret) < 32 {
		return fmt.Errorf("reading %s: httpSecret missing or too short", path)
	}
	return nil
}

func (s *State) ensureDevice(o InitOptions, now time.Time) error {
	path := s.Path(deviceFile)
	b, exists, err := readOptional(path)
	if err != nil {
		return err
	}
	var before []byte
	if exists {
		if err := s.parseDevice(b); err != nil {
			return err
		}
		before, _ = json.Marshal(s.Device)
	} else {
		if err := s.newDevice(o, now); err != nil {
			return err
		}
	}
	d := &s.Device
	if o.Name != nil {
		d.Name = *o.Name
	}
	if o.Domain != nil {
		d.Domain = *o.Domain
	}
	if o.Port != nil {
		d.Port = *o.Port
	}
	if o.Quota != nil {
		if *o.Quota < 0 {
			return fmt.Errorf("storage quota %d is negative", *o.Quota)
		}
		d.QuotaBytes = *o.Quota
	}
	if len(o.IPs) > 0 {
		d.IPs = d.IPs[:0]
		for _, ip := range o.IPs {
			d.IPs = append(d.IPs, ip.String())
		}
	}
	d.Host = "ecr." + d.Name + "." + d.Domain
	if err := validDNSName(d.Host); err != nil {
		return fmt.Errorf("registry host from --name %q and --domain %q: %w", d.Name, d.Domain, err)
	}
	after, _ := json.Marshal(s.Device)
	if exists && string(after) == string(before) {
		return nil
	}
	// Refuse a host or IP the existing CA may not certify before anything
	// is written.
	if ca, err := s.loadCA(); err == nil && ca != nil {
		if err := ca.checkConstraints(d.Host, d.netIPs()); err != nil {
			return err
		}
	}
	out, _ := json.MarshalIndent(s.Device, "", "  ")
	return s.write(deviceFile, append(out, '\n'), 0o600)
}

func (s *State) newDevice(o InitOptions, now time.Time) error {
	secret, err := NewSecret()
	if err != nil {
		return err
	}
	s.Device = Device{Domain: DefaultDomain, Port: DefaultPort, HTTPSecret: secret, Created: now.UTC()}
	if o.Name == nil {
		if o.DefaultName == nil {
			return errors.New("initialising device: no --name and no default")
		}
		n, err := o.DefaultName()
		if err != nil {
			return fmt.Errorf("initialising device: %w", err)
		}
		s.Device.Name = sanitizeName(n)
	}
	if len(o.IPs) == 0 && o.DefaultIPs != nil {
		ips, err := o.DefaultIPs()
		if err != nil {
			return fmt.Errorf("initialising device: detecting IP addresses: %w", err)
		}
		for _, ip := range ips {
			s.Device.IPs = append(s.Device.IPs, ip.String())
		}
	}
	return nil
}

// sanitizeName turns a host name like "Edge-Box_01.lan" into a DNS label.
func sanitizeName(n string) string {
	n, _, _ = strings.Cut(strings.ToLower(n), ".")
	var b strings.Builder
	for _, r := range n {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if out == "" {
		return "device"
	}
	return out
}

func (s *State) loadCA() (*CA, error) {
	certPEM, haveCert, err := readOptional(s.Path(caCertFile))
	if err != nil {
		return nil, err
	}
	keyPEM, haveKey, err := readOptional(s.Path(caKeyFile))
	if err != nil {
		return nil, err
	}
	switch {
	case !haveCert && !haveKey:
		return nil, nil
	case haveCert != haveKey:
		return nil, fmt.Errorf("loading device CA in %s: only one of %s and %s exists; restore the other from a backup or move the data dir away", s.Dir, caCertFile, caKeyFile)
	}
	ca, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading device CA %s: %w", s.Path(caCertFile), err)
	}
	return ca, nil
}

func (s *State) ensureCA(now time.Time) error {
	ca, err := s.loadCA()
	if err != nil {
		return err
	}
	if ca == nil {
		if _, ok, _ := readOptional(s.Path(serverCertFile)); ok {
			return fmt.Errorf("loading device CA in %s: %s exists but the CA is gone; refusing to create a new CA", s.Dir, serverCertFile)
		}
		certPEM, keyPEM, err := newCA(s.Device.Name, s.Device.Domain, s.Device.netIPs(), now)
		if err != nil {
			return err
		}
		if err := s.write(caKeyFile, keyPEM, 0o600); err != nil {
			return err
		}
		if err := s.write(caCertFile, certPEM, 0o644); err != nil {
			return err
		}
		if ca, err = parseCA(certPEM, keyPEM); err != nil {
			return err
		}
	}
	if ca, err = s.constrainCA(ca, now); err != nil {
		return err
	}
	s.CA = ca
	return nil
}

// LoadServerCert returns the serving certificate as it is on disk.
func (s *State) LoadServerCert() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(s.Path(serverCertFile))
	if err != nil {
		return nil, fmt.Errorf("reading server certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(s.Path(serverKeyFile))
	if err != nil {
		return nil, fmt.Errorf("reading server key: %w", err)
	}
	c, err := parseServerPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading server certificate %s: %w (it is derived state: remove %s and %s to have them reissued under the same CA)", s.Path(serverCertFile), err, serverCertFile, serverKeyFile)
	}
	return c, nil
}

// ensureServerCert issues the serving certificate when it is missing, near
// expiry or out of date, and returns the one in force.
func (s *State) ensureServerCert(now time.Time, lifetime time.Duration) (*tls.Certificate, error) {
	_, haveCert, err := readOptional(s.Path(serverCertFile))
	if err != nil {
		return nil, err
	}
	_, haveKey, err := readOptional(s.Path(serverKeyFile))
	if err != nil {
		return nil, err
	}
	if haveCert || haveKey {
		cur, err := s.LoadServerCert()
		if err != nil {
			return nil, err
		}
		redo, _ := needsReissue(cur.Leaf, s.CA, s.Device.Host, s.Device.netIPs(), now)
		if !redo {
			return cur, nil
		}
	}
	certPEM, keyPEM, err := s.CA.issueServerCert(s.Device.Host, s.Device.netIPs(), lifetime, now)
	if err != nil {
		return nil, err
	}
	if err := s.write(serverKeyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := s.write(serverCertFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	return parseServerPair(certPEM, keyPEM)
}

func (s *State) ensureAdmin(now time.Time) error {
	pw, err := s.AdminPassword()
	if err != nil {
		return err
	}
	store := s.Identities()
	if _, ok, err := readOptional(store.Path()); err != nil {
		return err
	} else if ok {
		_, err := store.Read() // validate
		return err
	}
	if pw == "" {
		if pw, err = NewSecret(); err != nil {
			return err
		}
		if err := s.write(adminFile, []byte(pw+"\n"), 0o600); err != nil {
			return err
		}
	}
	if s.dryRun {
		s.changed = append(s.changed, identitiesFile)
		return nil
	}
	return store.Update(true, func(r *Records) error {
		r.Identities = append(r.Identities, &Identity{
			ID: AdminUser, Name: AdminUser, Role: RoleAdmin, SecretHash: HashSecret(pw), Created: now.UTC(),
		})
		return nil
	})
}
