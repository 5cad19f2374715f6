package server

import (
	"context"
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

// State is an initialised device: its data dir on local disk, or its
// bucket (S3). Everything it knows (device settings, CA, server
// certificate, admin password, identities and tokens) is read and written
// through KV, under the keys named like the data dir's files.
type State struct {
	Dir    string // the data dir; "" when the state is in a bucket
	Device Device
	CA     *CA

	dryRun  bool     // Changes: record writes instead of making them
	changed []string // keys a dry run would have written

	kv  kv.Store       // the shared state (issue 12)
	loc *kv.S3Location // the bucket; nil for a data dir on local disk

	// imagesInDir keeps the images in Dir's storage even with a bucket:
	// tests of the shared state and the replicas without images on an
	// object store.
	imagesInDir bool

	ids     *identityCache // what Identities().Read last read of a bucket (identitycache.go)
	redeems *tokenCommits  // joins waiting to spend a use of a token (redeem.go)
}

// KV is the device's shared state: identities, tokens, device settings, the
// CA, GC and quota state. Replicas on one bucket change it only through its
// conditional writes.
func (s *State) KV() kv.Store {
	if s.kv == nil && s.loc == nil {
		s.kv = openFiles(s.Dir) // a State made as &State{Dir: dir}
	}
	return s.kv
}

// S3 is the bucket the device keeps its images and state in, nil for a data
// dir on local disk (the single-node default).
func (s *State) S3() *kv.S3Location { return s.loc }

// stateTimeout bounds one operation on the state (with retries) when the
// caller gives no context: an object store that does not answer must not
// hang an admin command or a join.
const stateTimeout = 30 * time.Second

func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), stateTimeout)
}

// openFiles is the state store of a data dir: its own files, by name.
func openFiles(dir string) *kv.Files {
	return kv.OpenFiles(dir, kv.Reserved(storageDir), kv.Mode(stateFileMode))
}

// stateFileMode: certificates are public, everything else is a secret.
func stateFileMode(key string) fs.FileMode {
	if strings.HasSuffix(key, ".crt") {
		return 0o644
	}
	return 0o600
}

// localState is the state of the data dir dir (nothing read yet).
func localState(dir string) *State { return &State{Dir: dir, kv: openFiles(dir)} }

// where names a key for the operator: its file, or its object.
func (s *State) where(key string) string {
	if s.loc == nil {
		return s.Path(key)
	}
	return s.loc.String() + " state key " + key
}

// get reads key; a missing key is (nil, "", false, nil).
func (s *State) get(key string) ([]byte, kv.Version, bool, error) {
	ctx, cancel := opCtx()
	defer cancel()
	b, v, err := s.KV().Get(ctx, key)
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return nil, "", false, nil
	case err != nil:
		return nil, "", false, fmt.Errorf("reading %s: %w", s.where(key), err)
	}
	return b, v, true, nil
}

// put writes key if its version is still ifVer ("": create-only), or only
// records the key in a dry run.
func (s *State) put(key string, data []byte, ifVer kv.Version) (kv.Version, error) {
	if s.dryRun {
		s.changed = append(s.changed, key)
		return ifVer, nil
	}
	ctx, cancel := opCtx()
	defer cancel()
	v, err := s.KV().Put(ctx, key, data, ifVer)
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", s.where(key), err)
	}
	return v, nil
}

// Path returns the path of a file in the data dir.
func (s *State) Path(name string) string { return filepath.Join(s.Dir, name) }

// CAFile is the path of the CA certificate; on a bucket, its object.
func (s *State) CAFile() string { return s.where(caCertFile) }

// StorageDir is the root of the registry's filesystem storage.
func (s *State) StorageDir() string { return s.Path(storageDir) }

// Identities is the identity store of the device.
func (s *State) Identities() *IdentityStore {
	is := &IdentityStore{kv: s.KV(), where: s.where(identitiesFile)}
	if _, ok := is.kv.(kv.VersionLister); ok {
		is.cache = s.identityCache()
	}
	return is
}

// AdminPassword returns the stored admin password ("" if it was removed).
func (s *State) AdminPassword() (string, error) {
	b, _, ok, err := s.get(adminFile)
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
	return ensure(localState(dir), o, now)
}

// Changes returns the data dir files Ensure(dir, o, now) would write (none
// when the flags match what the data dir has), and writes nothing: what
// `edgecrd init` checks while a serve owns the data dir.
func Changes(dir string, o InitOptions, now time.Time) ([]string, error) {
	s := localState(dir)
	s.dryRun = true
	if _, err := ensure(s, o, now); err != nil {
		return nil, err
	}
	return s.changed, nil
}

func ensure(s *State, o InitOptions, now time.Time) (*State, error) {
	if s.loc != nil {
		return ensureShared(s, o, now)
	}
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
	if err := s.ensureAll(o, now); err != nil {
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

// ensureAll creates or loads each piece of state in turn. Every step is
// "create if absent (create-only), else load", so replicas initialising one
// bucket at the same moment converge on what the first writer of each key
// wrote.
func (s *State) ensureAll(o InitOptions, now time.Time) error {
	if err := s.ensureDevice(o, now); err != nil {
		return err
	}
	if err := s.ensureCA(now); err != nil {
		return err
	}
	if _, err := s.ensureServerCert(now, serverLifetime); err != nil {
		return err
	}
	return s.ensureAdmin(now)
}

// Load opens an initialised data dir without changing anything.
func Load(dir string) (*State, error) {
	return load(localState(dir))
}

func load(s *State) (*State, error) {
	b, _, ok, err := s.get(deviceFile)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("loading %s: %s missing (run edgecrd init)", s.describe(), deviceFile)
	}
	if err := s.parseDevice(b); err != nil {
		return nil, err
	}
	if s.CA, err = s.loadCA(); err != nil {
		return nil, err
	}
	if s.CA == nil {
		return nil, fmt.Errorf("loading %s: %s missing (run edgecrd init)", s.describe(), caCertFile)
	}
	return s, nil
}

// describe names where the state is, for the operator.
func (s *State) describe() string {
	if s.loc == nil {
		return "data dir " + s.Dir
	}
	return "storage " + s.loc.String()
}

func (s *State) parseDevice(b []byte) error {
	path := s.where(deviceFile)
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

// ensureDevice creates device.json (create-only: of two replicas creating
// it at once, the second loads the first's) or applies the flags to it
// (a compare-and-swap, retried on a conflict).
func (s *State) ensureDevice(o InitOptions, now time.Time) error {
	for attempt := 0; ; attempt++ {
		err := s.ensureDeviceOnce(o, now)
		if !errors.Is(err, kv.ErrConflict) || attempt >= 5 {
			return err
		}
	}
}

func (s *State) ensureDeviceOnce(o InitOptions, now time.Time) error {
	b, ver, exists, err := s.get(deviceFile)
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
	_, err = s.put(deviceFile, append(out, '\n'), ver)
	return err
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

// errCAHalf: one of ca.crt and ca.key exists without the other.
var errCAHalf = errors.New("half of the device CA")

func (s *State) loadCA() (*CA, error) {
	certPEM, _, haveCert, err := s.get(caCertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, _, haveKey, err := s.get(caKeyFile)
	if err != nil {
		return nil, err
	}
	switch {
	case !haveCert && !haveKey:
		return nil, nil
	case haveCert != haveKey:
		return nil, fmt.Errorf("loading device CA in %s: only one of %s and %s exists; restore the other from a backup or move the data dir away: %w", s.describe(), caCertFile, caKeyFile, errCAHalf)
	}
	ca, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading device CA %s: %w", s.where(caCertFile), err)
	}
	return ca, nil
}

// caWait bounds how long a replica waits for the CA certificate another
// replica is writing after its key (a first start of several at once).
var caWait = 20 * time.Second

func (s *State) ensureCA(now time.Time) error {
	ca, err := s.loadCA()
	if errors.Is(err, errCAHalf) && s.loc != nil {
		ca, err = s.waitCA()
	}
	if err != nil {
		return err
	}
	if ca == nil {
		if _, _, ok, _ := s.get(serverCertFile); ok {
			return fmt.Errorf("loading device CA in %s: %s exists but the CA is gone; refusing to create a new CA", s.describe(), serverCertFile)
		}
		certPEM, keyPEM, err := newCA(s.Device.Name, s.Device.Domain, s.Device.netIPs(), now)
		if err != nil {
			return err
		}
		// The key is written create-only first: whoever creates it owns the
		// CA; a replica that loses the race loads the winner's.
		switch _, err := s.put(caKeyFile, keyPEM, ""); {
		case errors.Is(err, kv.ErrConflict):
			if ca, err = s.waitCA(); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if _, err := s.put(caCertFile, certPEM, ""); err != nil {
				return err
			}
			if ca, err = parseCA(certPEM, keyPEM); err != nil {
				return err
			}
		}
	}
	if ca, err = s.constrainCA(ca, now); err != nil {
		return err
	}
	s.CA = ca
	return nil
}

// waitCA loads the CA another replica is creating: its key is there, its
// certificate follows.
func (s *State) waitCA() (*CA, error) {
	deadline := time.Now().Add(caWait)
	for {
		ca, err := s.loadCA()
		if err == nil && ca != nil {
			return ca, nil
		}
		if err != nil && !errors.Is(err, errCAHalf) || time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("loading device CA in %s: it disappeared while another replica created it", s.describe())
			}
			return nil, fmt.Errorf("%w (waited %s for another replica to finish creating it; if none is, an initialisation was interrupted: remove %s from the bucket's state and start again)", err, caWait, caKeyFile)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// LoadServerCert returns the serving certificate as it is stored.
func (s *State) LoadServerCert() (*tls.Certificate, error) {
	p, err := s.readServerPair()
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("reading server certificate: %s missing", s.where(serverCertFile))
	}
	return p.parse(s)
}

// ensureServerCert issues the serving certificate when it is missing, near
// expiry or out of date, and returns the one in force.
func (s *State) ensureServerCert(now time.Time, lifetime time.Duration) (*tls.Certificate, error) {
	for attempt := 0; ; attempt++ {
		c, err := s.ensureServerCertOnce(now, lifetime)
		if !errors.Is(err, kv.ErrConflict) || attempt >= 5 {
			return c, err
		}
	}
}

func (s *State) ensureServerCertOnce(now time.Time, lifetime time.Duration) (*tls.Certificate, error) {
	cur, err := s.readServerPair()
	if err != nil {
		return nil, err
	}
	if cur != nil {
		c, err := cur.parse(s)
		if err != nil {
			return nil, err
		}
		redo, _ := needsReissue(c.Leaf, s.CA, s.Device.Host, s.Device.netIPs(), now)
		if s.loc != nil {
			// On a bucket the certificate also names the replicas
			// (replicacert.go): more addresses than device.json's are
			// right, and dropping them would make the replicas reissue.
			covers, _ := certCovers(c.Leaf, s.CA, s.Device.Host, s.Device.netIPs(), now)
			redo = !covers
		}
		if !redo {
			return c, nil
		}
	}
	certPEM, keyPEM, err := s.CA.issueServerCert(s.Device.Host, s.Device.netIPs(), lifetime, now)
	if err != nil {
		return nil, err
	}
	next := &serverPair{certPEM: certPEM, keyPEM: keyPEM}
	if err := s.writeServerPair(cur, next); err != nil {
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
	if _, _, ok, err := s.get(identitiesFile); err != nil {
		return err
	} else if ok {
		if !s.dryRun {
			// A data dir or bucket from before the identity shards is
			// converted here, at the first start of this release.
			ctx, cancel := opCtx()
			defer cancel()
			if err := store.ensureLayout(ctx); err != nil {
				return err
			}
		}
		_, err := store.Read() // validate
		return err
	}
	if pw == "" {
		if pw, err = NewSecret(); err != nil {
			return err
		}
		if _, err := s.put(adminFile, []byte(pw+"\n"), ""); errors.Is(err, kv.ErrConflict) {
			// Another replica initialising at the same moment: use its.
			if pw, err = s.AdminPassword(); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
	}
	if s.dryRun {
		s.changed = append(s.changed, identitiesFile)
		return nil
	}
	return store.Update(true, func(r *Records) error {
		if r.Find(AdminUser) == nil {
			r.Identities = append(r.Identities, &Identity{
				ID: AdminUser, Name: AdminUser, Role: RoleAdmin, SecretHash: HashSecret(pw), Created: now.UTC(),
			})
		}
		return nil
	})
}
