package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// On a bucket the serving certificate is shared state: the keys server.crt
// and server.key, named like the data dir's files. Every replica serves the
// pair as it is in the store, polling server.crt with a conditional read;
// one that finds the certificate does not name the registry host, the
// device's IPs and every live replica's IPs (or is near expiry) reissues
// it under the device CA. One replica at a time: the reissue holds a lease
// key, so that replicas noticing a new one at once do not each write a
// pair; the key is written before the certificate, and a reader takes a
// pair only when the two match, so it never serves a certificate with
// another key. A replica killed between the two writes leaves a pair that
// does not match: the next replica to look reissues it once the lease has
// expired.
const (
	certLeaseKey = "leases/server-cert"
	certLeaseFor = 30 * time.Second
)

// replicaCert is this replica's copy of the shared serving certificate.
type replicaCert struct {
	store    kv.Store
	ca       *CA
	holder   string // lease holder: the replica's instance
	lifetime time.Duration
	now      func() time.Time

	ver kv.Version       // of server.crt as last read
	cur *tls.Certificate // the pair in force, with the CA appended; nil before the first read
}

// readPair reads server.crt and server.key. It returns the pair (nil when
// either is missing or they do not form a pair signed by the CA) and the
// versions to write over.
func (c *replicaCert) readPair(ctx context.Context) (pair *tls.Certificate, certVer, keyVer kv.Version, err error) {
	certPEM, certVer, err := c.store.Get(ctx, serverCertFile)
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		return nil, "", "", fmt.Errorf("reading the server certificate: %w", err)
	}
	keyPEM, keyVer, err := c.store.Get(ctx, serverKeyFile)
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		return nil, "", "", fmt.Errorf("reading the server key: %w", err)
	}
	if certVer == "" || keyVer == "" {
		return nil, certVer, keyVer, nil
	}
	p, err := c.parse(certPEM, keyPEM)
	if err != nil {
		return nil, certVer, keyVer, nil // a half-written or foreign pair: reissued
	}
	return p, certVer, keyVer, nil
}

func (c *replicaCert) parse(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	p, err := parseServerPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if err := p.Leaf.CheckSignatureFrom(c.ca.Cert); err != nil {
		return nil, fmt.Errorf("server certificate not signed by the device CA: %w", err)
	}
	// Send the CA with the leaf: a joining client checks the chain against
	// the pin in its token before it has the CA anywhere else.
	p.Certificate = append(p.Certificate, c.ca.Cert.Raw)
	return p, nil
}

// poll takes a changed server.crt (one conditional read while it is
// unchanged) and reports whether the pair in force changed.
func (c *replicaCert) poll(ctx context.Context) (bool, error) {
	certPEM, ver, changed, err := c.store.GetIfChanged(ctx, serverCertFile, c.ver)
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("polling the server certificate: %w", err)
	}
	if !changed {
		return false, nil
	}
	keyPEM, _, err := c.store.Get(ctx, serverKeyFile)
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the server key: %w", err)
	}
	p, err := c.parse(certPEM, keyPEM)
	if err != nil {
		return false, nil // mid-reissue, or broken: keep serving what we have; sync reissues when due
	}
	c.ver = ver
	if c.cur != nil && c.cur.Leaf.Equal(p.Leaf) {
		return false, nil
	}
	c.cur = p
	return true, nil
}

// sync makes sure the pair in force names host and need (reissuing it for
// host and issue when it does not, or when it is near expiry), and reports
// whether the pair in force changed.
func (c *replicaCert) sync(ctx context.Context, host string, need, issue []net.IP) (bool, error) {
	changed, err := c.poll(ctx)
	if err != nil {
		return false, err
	}
	if c.cur != nil {
		if ok, _ := certCovers(c.cur.Leaf, c.ca, host, need, c.now()); ok {
			return changed, nil
		}
	}
	reissued, err := c.reissue(ctx, host, need, issue)
	return changed || reissued, err
}

// reissue writes a new pair under the lease, unless another replica holds
// the lease (it is at it: its result arrives with a later poll) or the pair
// in the store already does.
func (c *replicaCert) reissue(ctx context.Context, host string, need, issue []net.IP) (bool, error) {
	release, ok, err := takeLease(ctx, c.store, certLeaseKey, c.holder, certLeaseFor, c.now())
	if err != nil || !ok {
		return false, err
	}
	defer release()
	cur, certVer, keyVer, err := c.readPair(ctx)
	if err != nil {
		return false, err
	}
	if cur != nil {
		if ok, _ := certCovers(cur.Leaf, c.ca, host, need, c.now()); ok {
			c.ver, c.cur = certVer, cur
			return true, nil
		}
	}
	certPEM, keyPEM, err := c.ca.issueServerCert(host, issue, c.lifetime, c.now())
	if err != nil {
		return false, fmt.Errorf("reissuing the server certificate: %w", err)
	}
	p, err := c.parse(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("reissuing the server certificate: %w", err)
	}
	if _, err := c.store.Put(ctx, serverKeyFile, keyPEM, keyVer); err != nil {
		return false, fmt.Errorf("writing the server key: %w", err)
	}
	nv, err := c.store.Put(ctx, serverCertFile, certPEM, certVer)
	if err != nil {
		return false, fmt.Errorf("writing the server certificate: %w", err)
	}
	c.ver, c.cur = nv, p
	return true, nil
}

// certCovers reports whether cert may stay the serving certificate of a
// replica set: signed by the CA, not near expiry, naming host and every
// address of need. Unlike needsReissue (one node: the SANs must be exactly
// the configured ones) it accepts more addresses: those of a replica that
// stopped stay until the next reissue, so a replica restarting does not
// reissue for every other replica.
func certCovers(cert *x509.Certificate, ca *CA, host string, need []net.IP, now time.Time) (bool, string) {
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		return false, "not signed by the device CA"
	}
	if cert.NotAfter.Sub(now) < renewBefore(cert) {
		return false, fmt.Sprintf("expires %s", cert.NotAfter.Format(time.RFC3339))
	}
	if !slices.Contains(cert.DNSNames, host) {
		return false, "does not name " + host
	}
	for _, ip := range need {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false, "does not name " + ip.String()
		}
	}
	return true, ""
}

// lease is the value of a lease key.
type lease struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// takeLease takes key for holder until now+ttl: create-only, or over an
// expired lease by CAS. ok is false while someone else holds it. release
// deletes it if it is still ours.
func takeLease(ctx context.Context, store kv.Store, key, holder string, ttl time.Duration, now time.Time) (release func(), ok bool, err error) {
	val, _ := json.Marshal(lease{Holder: holder, Expires: now.Add(ttl).UTC()})
	ver, err := store.Put(ctx, key, val, "")
	if errors.Is(err, kv.ErrConflict) {
		cur, curVer, gerr := store.Get(ctx, key)
		if errors.Is(gerr, kv.ErrNotFound) {
			return nil, false, nil // released meanwhile: the next round takes it
		}
		if gerr != nil {
			return nil, false, fmt.Errorf("reading lease %s: %w", key, gerr)
		}
		var l lease
		if json.Unmarshal(cur, &l) == nil && now.Before(l.Expires) {
			return nil, false, nil
		}
		ver, err = store.Put(ctx, key, val, curVer)
		if errors.Is(err, kv.ErrConflict) {
			return nil, false, nil
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("taking lease %s: %w", key, err)
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = store.Delete(dctx, key, ver) // if it failed, the lease expires
	}, true, nil
}
