package server

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// serverPair is the registry's serving certificate and key as stored
// (server.crt, server.key) with their versions. Reading and writing the
// pair happens here only, so that whoever changes how it is issued (one
// certificate naming every replica) changes one place.
type serverPair struct {
	certPEM, keyPEM []byte
	certVer, keyVer kv.Version
}

// pairSettle bounds how long a reader waits for a pair another replica is
// writing (its new key is there, its certificate follows).
const pairSettle = 5 * time.Second

// readServerPair returns the stored pair, nil when neither half exists. On
// a bucket, a half or a mismatched pair is read again for up to pairSettle
// (another replica between its two writes) before it is an error.
func (s *State) readServerPair() (*serverPair, error) {
	deadline := time.Now().Add(pairSettle)
	for {
		p, err := s.readServerPairOnce()
		if err == nil || s.loc == nil || time.Now().After(deadline) {
			return p, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *State) readServerPairOnce() (*serverPair, error) {
	p := &serverPair{}
	var haveCert, haveKey bool
	var err error
	if p.certPEM, p.certVer, haveCert, err = s.get(serverCertFile); err != nil {
		return nil, err
	}
	if p.keyPEM, p.keyVer, haveKey, err = s.get(serverKeyFile); err != nil {
		return nil, err
	}
	switch {
	case !haveCert && !haveKey:
		return nil, nil
	case !haveCert:
		return nil, fmt.Errorf("reading server certificate: %s missing", s.where(serverCertFile))
	case !haveKey:
		return nil, fmt.Errorf("reading server key: %s missing", s.where(serverKeyFile))
	}
	if _, err := p.parse(s); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *serverPair) parse(s *State) (*tls.Certificate, error) {
	c, err := parseServerPair(p.certPEM, p.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading server certificate %s: %w (it is derived state: remove %s and %s to have them reissued under the same CA)", s.where(serverCertFile), err, serverCertFile, serverKeyFile)
	}
	return c, nil
}

// writeServerPair replaces cur (nil: none stored) with next, key first,
// each write conditional on the version read: a replica that reissued in
// between makes this one fail with kv.ErrConflict, and the caller reads
// again.
func (s *State) writeServerPair(cur, next *serverPair) error {
	var certVer, keyVer kv.Version
	if cur != nil {
		certVer, keyVer = cur.certVer, cur.keyVer
	}
	var err error
	if next.keyVer, err = s.put(serverKeyFile, next.keyPEM, keyVer); err != nil {
		return err
	}
	next.certVer, err = s.put(serverCertFile, next.certPEM, certVer)
	return err
}
